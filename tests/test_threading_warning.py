"""Where TBB cannot load, one warning says which layer runs and what it means."""

import subprocess
import sys

CODE = """
import warnings
warnings.simplefilter("always")
import numpy as np
import fastloss
from fastloss import _threading

if {missing}:
    _threading._load_tbb = lambda: None  # as on a platform without a TBB wheel
x = np.ones(1 << 20, np.float32)
for _ in range(3):
    fastloss.mse_loss(x, x, return_grad=True)
print("layer", _threading.threading_layer())
"""


def _run(missing: bool) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CODE.format(missing=missing)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_one_warning_names_the_layer_without_tbb():
    proc = _run(True)
    assert proc.returncode == 0, proc.stderr
    layer = proc.stdout.split()[-1]
    assert layer in ("omp", "workqueue")
    assert proc.stderr.count("Intel TBB could not be loaded") == 1, proc.stderr
    assert f"'{layer}' threading layer" in proc.stderr


def test_no_warning_with_tbb():
    proc = _run(False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "tbb"
    assert "Intel TBB" not in proc.stderr
