"""The package as users get it: the wheel's contents, a clean install, a light import."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("fastloss-*.whl")
    return found


def test_wheel_ships_kernels_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastloss/kernels/elementwise.py" in names
    assert "fastloss/kernels/regression.py" in names
    assert "fastloss/kernels/cuda/__init__.py" in names
    assert not any(n.startswith("kernels/") for n in names), "no top-level 'kernels' package"


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    # Dependencies come from this environment's site-packages, placed after the venv's own, so
    # fastloss itself can only come from the wheel.
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages" / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = f"VENV = {str(venv)!r}\n" + (
        "import fastloss, numpy as np, fastloss.kernels.regression as k\n"
        "assert fastloss.__file__.startswith(VENV), fastloss.__file__\n"
        "assert k.__file__.startswith(VENV), k.__file__\n"
        "loss, grad = fastloss.mse_loss(np.array([1.0, 2.0]), np.array([0.0, 0.0]), "
        "return_grad=True)\n"
        "assert loss == 2.5 and grad.tolist() == [1.0, 2.0], (loss, grad)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "FASTLOSS_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_import_compiles_nothing_and_does_not_import_numba():
    code = "import sys, fastloss; print('numba' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
