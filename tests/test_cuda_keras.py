"""Keras's cross-entropies on CUDA device arrays without a GPU: the simulator cases and the
device-compile cases, each in a pytest process of its own (see ``tests/test_cuda_sim.py`` for
why). Run them by hand with::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_keras_sim_cases.py
    python -m pytest tests/cuda_keras_compile_cases.py
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

needs_numba_cuda = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"
)


def _pytest(path: Path, *, simulator: bool, timeout: float) -> None:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    command = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"")[-20000:]
        pytest.fail(f"{path.name} did not finish in {timeout} s:\n{output!r}")
    if proc.returncode != 0:
        pytest.fail(
            f"{path.name} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-30000:]}\n{proc.stderr[-5000:]}",
            pytrace=False,
        )


@needs_numba_cuda
def test_keras_simulator_suite():
    """categorical, sparse categorical and categorical focal cross-entropy on the simulator,
    against the CPU functions."""
    _pytest(HERE / "cuda_keras_sim_cases.py", simulator=True, timeout=400)


@needs_numba_cuda
def test_keras_device_compile_suite():
    """The Keras kernels lower for sm_90, without fast math."""
    _pytest(HERE / "cuda_keras_compile_cases.py", simulator=False, timeout=400)
