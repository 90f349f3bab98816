"""The on-disk kernel cache under concurrent processes.

Numba's cache has a history of crashes when several processes compile into it at once (numba
issue 4807). fastloss writes its generated kernel modules atomically and lets Numba cache next
to them; here four processes start together on an empty cache directory, then four more run on
the now-warm one, and every process must succeed with the same bits.
"""

import getpass
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import fastloss.kernels

CODE = """
import numpy as np
import fastloss

rng = np.random.default_rng(7)
x = rng.standard_normal(1_500_000).astype(np.float32)
t = rng.poisson(2.0, 1_500_000).astype(np.float32)
mse, grad = fastloss.mse_loss(x, t, return_grad=True)
poisson = fastloss.poisson_nll_loss(x, t)
hits = misses = 0
for module in fastloss._elementwise._modules.values():
    for name in dir(module):
        stats = getattr(getattr(module, name), "stats", None)
        if stats is not None:
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
print(float(mse).hex(), float(poisson).hex(), float(grad.sum(dtype=np.float64)).hex(), hits, misses)
"""


def _run_together(count: int, env: dict) -> list[list[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CODE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        lines.append(out.decode().split())
    return lines


def test_processes_compiling_into_an_empty_cache_at_once(tmp_path):
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    cold = _run_together(4, env)
    warm = _run_together(4, env)
    digests = {tuple(line[:3]) for line in cold + warm}
    assert len(digests) == 1, digests
    generated = list(tmp_path.glob("kernels-*/*.py"))
    stems = {p.stem.rsplit("-", 1)[0] for p in generated}
    assert stems >= {"mse", "poisson_nll_log_input1_full0"}, stems
    assert list(tmp_path.glob("kernels-*/numba/generated/*.nbi")), "Numba wrote no cache index"
    assert not list(tmp_path.glob("kernels-*/*.tmp")), "a partial generated module was left"
    # The warm processes load every kernel from the cache and compile none.
    assert all(int(line[3]) > 0 and int(line[4]) == 0 for line in warm), warm
    assert all(int(line[3]) + int(line[4]) > 0 for line in cold), cold


# A loss declared in a user's script: the same spec name, another point function.
USER_LOSS = """
import numpy as np
from numba import njit

from fastloss._elementwise import run
from fastloss.kernels.elementwise import ElementwiseSpec
from fastloss.kernels._jit import POINT_OPTIONS


@njit(**POINT_OPTIONS)
def value_grad(x, t):
    d = x - t
    return FACTOR * d, FACTOR


SPEC = ElementwiseSpec("user_scaled", value_grad)
x = np.full(10, 3.0)
t = np.full(10, 1.0)
print(run(SPEC, (x, t), ("input", "target"), reduction="sum"))
"""


def _python(code: str, env: dict, tmp_path, name: str = "script.py") -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_redefined_point_function_is_never_served_from_a_stale_cache(tmp_path):
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path / "cache"))
    answers = []
    for factor in (2.0, 10.0, 2.0):
        proc = _python(f"FACTOR = {factor}\n" + USER_LOSS, env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        answers.append(float(proc.stdout.split()[-1]))
    assert answers == [40.0, 200.0, 40.0]
    modules = list((tmp_path / "cache").glob("kernels-*/user_scaled-*.py"))
    assert len(modules) == 2, modules


ROW_LOSS = """
import numpy as np
import fastloss
print(fastloss.cross_entropy(np.zeros((3, 4), np.float32), [0, 1, 2]))
"""


def test_row_kernels_cache_in_the_one_directory(tmp_path):
    kernels = Path(fastloss.kernels.__file__).resolve().parent
    before = {p: p.stat().st_mtime for p in kernels.rglob("*.nb[ic]")}
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path))
    proc = _python(ROW_LOSS, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.glob("kernels-*/numba/generated/rows_cross_entropy_*.value_rows_*.nbi"))
    assert list(tmp_path.glob("kernels-*/numba/kernels/softmax.check_targets-*.nbi"))
    assert list(tmp_path.glob("kernels-*/numba/kernels/reduction.*.nbi"))
    after = {p: p.stat().st_mtime for p in kernels.rglob("*.nb[ic]")}
    assert after == before, "a kernel was cached beside the sources"


def _blocked(tmp_path) -> str:
    """A path under a regular file: no process can create it, root included."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    return str(blocker / "sub")


def test_the_temporary_fallback_is_private(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, XDG_CACHE_HOME=_blocked(tmp_path), TMPDIR=str(temp))
    env.pop("FASTLOSS_CACHE_DIR", None)
    proc = _python(ROW_LOSS, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (root,) = temp.glob("fastloss-*")
    assert root.stat().st_mode & 0o777 == 0o700
    assert list(root.glob("kernels-*/numba/kernels/*.nbi"))


def test_no_writable_directory_compiles_uncached_with_one_warning(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    # A fallback directory that others can write to is not used.
    for name in ("fastloss-" + getpass.getuser(),):
        (temp / name).mkdir(mode=0o777)
        os.chmod(temp / name, 0o777)
    blocked = _blocked(tmp_path)
    env = dict(os.environ, FASTLOSS_CACHE_DIR=blocked, XDG_CACHE_HOME=blocked, TMPDIR=str(temp))
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        + ROW_LOSS
        + USER_LOSS.replace("import numpy as np", "FACTOR = 3.0\nimport numpy as np", 1)
    )
    proc = _python(code, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "60.0"
    assert proc.stderr.count("no writable cache directory") == 1, proc.stderr
    assert not list(temp.rglob("*.nbi"))


def test_directories_of_earlier_versions_are_pruned(tmp_path):
    from fastloss.kernels import _cache

    here = str(_cache.HERE)
    now = time.time()
    dirs = {
        "kernels-earlier": (here, now - 2 * 3600),  # this installation, unused 2 h: pruned
        "kernels-running": (here, now - 60),  # this installation, in use: kept
        "kernels-old-layout": (None, now - 2 * 3600),  # no origin file: pruned
        "kernels-other": (str(tmp_path), now - 2 * 86400),  # another installation: kept
        "kernels-abandoned": (str(tmp_path), now - 40 * 86400),  # unused 40 days: pruned
    }
    for name, (origin, used) in dirs.items():
        leaf = tmp_path / name
        leaf.mkdir()
        if origin is not None:
            (leaf / _cache.ORIGIN).write_text(origin)
            (leaf / _cache.USED).touch()
            os.utime(leaf / _cache.USED, (used, used))
        os.utime(leaf, (used, used))
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path))
    proc = _python("import fastloss.kernels.reduction", env, tmp_path, "prune.py")
    assert proc.returncode == 0, proc.stderr
    left = {p.name for p in tmp_path.glob("kernels-*")}
    assert left - {f"kernels-{_cache.source_hash()}"} == {"kernels-running", "kernels-other"}


def test_the_cache_command_shows_and_clears(tmp_path):
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path))
    assert _python(ROW_LOSS, env, tmp_path).returncode == 0
    show = subprocess.run(
        [sys.executable, "-m", "fastloss", "cache"], env=env, capture_output=True, text=True
    )
    assert show.returncode == 0, show.stderr
    assert str(tmp_path) in show.stdout and "(this installation)" in show.stdout
    assert "KiB" in show.stdout or "MiB" in show.stdout
    clear = subprocess.run(
        [sys.executable, "-m", "fastloss", "cache", "--clear"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert clear.returncode == 0, clear.stderr
    assert not list(tmp_path.glob("kernels-*"))


def test_kernels_import_nothing_from_the_front_end():
    kernels = Path(fastloss.kernels.__file__).resolve().parent
    front = re.compile(
        r"^\s*(from fastloss(?!\.kernels)[\w.]* import|import fastloss(?!\.kernels))", re.M
    )
    offenders = [p.name for p in kernels.rglob("*.py") if front.search(p.read_text())]
    assert not offenders, offenders
