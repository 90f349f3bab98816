"""The CUDA path without a GPU: every simulator suite and every device-compile suite.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, at import, and the rest of the test session imports
Numba for the CPU, so each simulator suite (``tests/cuda_*sim_cases.py``) runs in a pytest
process of its own; so does each compile suite (``tests/cuda_*compile_cases.py``), which patches
numba-cuda to compile for a GPU it does not have. Their names keep them out of this session's
collection; their output is shown when they fail. Run one by hand with, e.g.::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_softmax_sim_cases.py
    python -m pytest tests/cuda_softmax_compile_cases.py
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

# (file, runs under the simulator, timeout in seconds, what it covers)
SUITES = [
    ("cuda_sim_cases.py", True, 800, "regression losses: every reduction, dtype, layout, out="),
    ("cuda_compile_cases.py", False, 800, "every elementwise kernel lowers for sm_90"),
    ("cuda_binary_sim_cases.py", True, 600, "binary losses and kl_div against the CPU"),
    ("cuda_binary_compile_cases.py", False, 600, "binary and kl_div kernels lower for sm_90"),
    ("cuda_softmax_sim_cases.py", True, 400, "cross-entropy, NLL, focal against the CPU"),
    ("cuda_softmax_compile_cases.py", False, 400, "softmax row kernels lower for sm_90"),
    ("cuda_keras_sim_cases.py", True, 400, "Keras's cross-entropies against the CPU"),
    ("cuda_keras_compile_cases.py", False, 400, "Keras row kernels lower for sm_90"),
    ("cuda_rows_sim_cases.py", True, 300, "cosine embedding, triplet margin against the CPU"),
    ("cuda_rows_compile_cases.py", False, 150, "row-factory kernels lower for sm_90"),
]


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


@pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"
)
@pytest.mark.parametrize(
    "file, simulator, timeout", [s[:3] for s in SUITES], ids=[s[0][:-3] for s in SUITES]
)
def test_cuda_suite(file, simulator, timeout):
    _pytest(HERE / file, simulator=simulator, timeout=timeout)


def test_every_suite_is_run():
    """A new ``cuda_*_cases.py`` file is listed above (so this runner can fail)."""
    found = {p.name for p in HERE.glob("cuda_*_cases.py")}
    assert found == {s[0] for s in SUITES}


@pytest.mark.parametrize(
    "module", ["fastloss._cuda", "fastloss._cuda_softmax", "fastloss._cuda_rows"]
)
def test_device_modules_import_no_numba(module):
    """The device modules are pure Python: importing fastloss and them loads no Numba."""
    code = (
        f"import sys, fastloss, {module}; "
        "assert 'numba' not in sys.modules, sorted(m for m in sys.modules if 'numba' in m)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
