"""The binary losses and kl_div on the CUDA path, without a GPU: the simulator suite
(``tests/cuda_binary_sim_cases.py``) and the device-compile suite
(``tests/cuda_binary_compile_cases.py``), each in a pytest process of its own (see
``tests/test_cuda_sim.py``). Both processes start together, when the first test needs them, and
run side by side; each test waits for its own. By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_binary_sim_cases.py
    python -m pytest tests/cuda_binary_compile_cases.py
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMEOUT = 600

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"
)

SUITES = {"simulator": "cuda_binary_sim_cases.py", "compile": "cuda_binary_compile_cases.py"}


def _start(path: Path, simulator: bool, log):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    command = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def suites():
    started = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, file in SUITES.items():
            log = open(Path(tmp) / f"{name}.log", "w+")  # noqa: SIM115 - closed below
            started[name] = (_start(HERE / file, name == "simulator", log), log)
        yield started
        for proc, log in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def _wait(suites, name: str) -> None:
    proc, log = suites[name]
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    log.seek(0)
    output = log.read()
    if code is None:
        pytest.fail(f"{SUITES[name]} did not finish in {TIMEOUT} s:\n{output[-20000:]}")
    if code != 0:
        pytest.fail(f"{SUITES[name]} failed (exit {code}):\n{output[-30000:]}", pytrace=False)


def test_simulator_suite(suites):
    """Every binary loss and kl_div, option, dtype and reduction on the CUDA simulator,
    against the CPU result of the same call; range check, refusals, no host synchronisation."""
    _wait(suites, "simulator")


def test_device_compile_suite(suites):
    """Every binary/kl kernel lowers for sm_90, without fast-math approximate functions."""
    _wait(suites, "compile")
