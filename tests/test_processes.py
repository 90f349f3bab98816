"""fastloss in real processes: many threads at once, fork, fork of a fork, spawn and forkserver.

Numba picks its threading layer once per process, so every scenario runs in a fresh interpreter
(a script written to a temporary directory, so that spawn and forkserver children can import
it). A crash or a hang fails the test instead of killing pytest: the scenario's process group
is killed at the timeout. See docs/threading.md; ``python tests/test_processes.py`` prints the
table of every scenario under every layer that the docs show.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The loss every scenario calls: an expression of the float32 arrays ``p`` and ``t`` that gives
# ``(loss, grad)`` for the mean squared error, through the public API.
CALL = "fastloss.mse_loss(p, t, return_grad=True)"

# Shared by every scenario. Top level: definitions and data only (spawn and forkserver children
# import it); the scenario body runs under ``if __name__ == "__main__":``.
PRELUDE = """
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import sys
import threading

import numpy as np

import fastloss  # first, as users do: fastloss imports Numba only when first used
from fastloss import _threading

import numba


def loss(p, t):
    return __CALL__


N = 2_000_000
_rng = np.random.default_rng(20240601)
P = _rng.standard_normal(N, dtype=np.float32)
T = _rng.standard_normal(N, dtype=np.float32)
_D = P.astype(np.float64) - T
REF = float(np.mean(_D * _D))
REF_GRAD = (2.0 / N) * _D
del _D


def check(result):
    \"\"\"Check a (loss, grad) result against NumPy; return it as (float32 loss, grad).\"\"\"
    value, grad = result
    value = np.float32(value)
    assert abs(float(value) - REF) <= 2e-6 * REF, (float(value), REF)
    np.testing.assert_allclose(grad, REF_GRAD, rtol=2e-6, atol=1e-13)
    return value, grad


def digest(result):
    \"\"\"A checked result's exact bits, hashed.\"\"\"
    value, grad = check(result)
    return value.tobytes().hex() + ":" + hashlib.sha256(grad.tobytes()).hexdigest()


def task(_):
    \"\"\"Pool worker: one call, checked, as bits.\"\"\"
    return digest(loss(P, T))


def hammer(n_threads, calls):
    \"\"\"n_threads threads x `calls` calls at once, all bit-identical to a lone call.\"\"\"
    value, grad = check(loss(P, T))
    errors = []
    barrier = threading.Barrier(n_threads)

    def work():
        try:
            barrier.wait()
            for _ in range(calls):
                v, g = loss(P, T)
                assert np.float32(v).tobytes() == value.tobytes(), (v, value)
                assert np.array_equal(g, grad)
        except BaseException as e:  # reported by the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]


def report(**extra):
    guard = _threading.parallel_guard
    info = {
        "layer": _threading.threading_layer(),
        "numba_layer": numba.threading_layer(),
        "guard": type(guard).__module__ + "." + type(guard).__qualname__,
        "fork_safe": _threading.fork_safe,
        "tbb_library": _threading.tbb_library,
        "env_layer": os.environ.get("NUMBA_THREADING_LAYER"),
    }
    info.update(extra)
    print("RESULT " + json.dumps(info), flush=True)
"""


def build(body: str, call: str = CALL) -> str:
    """The scenario script: the prelude with ``call`` as the loss, then ``body`` as main."""
    main = textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")
    return PRELUDE.replace("__CALL__", call) + '\n\nif __name__ == "__main__":\n' + main


def execute(directory: Path, body: str, layer: str | None, timeout: float):
    """Run a scenario in a fresh interpreter: (returncode, or None if it hung; stdout; stderr)."""
    script = directory / f"scenario_{next(_count)}.py"
    script.write_text(build(body))
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: pool workers die with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    try:  # leftover children of a failed scenario
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return code, out, err


_count = itertools.count()


@pytest.fixture(scope="module")
def where(tmp_path_factory) -> Path:
    """One directory for the module's scenario scripts."""
    return tmp_path_factory.mktemp("scenarios")


def run(where: Path, body: str, layer: str | None = None, timeout: float = 60.0) -> dict:
    """Run a scenario; return its RESULT dict. Fails on a crash, a hang or a failed check."""
    code, out, err = execute(where, body, layer, timeout)
    logs = f"stdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    if code is None:
        pytest.fail(f"scenario hung (> {timeout} s)\n{logs}")
    assert code == 0, f"scenario exited with {code}\n{logs}"
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no RESULT line\n{logs}"
    return json.loads(lines[-1][len("RESULT ") :])


# The layer each NUMBA_THREADING_LAYER setting must end up with here (the venv has pip's tbb).
EXPECTED = {None: "tbb", "tbb": "tbb", "workqueue": "workqueue", "omp": "omp"}
GUARD = {
    "tbb": "fastloss._threading._ForkGuard",
    "workqueue": "_thread.lock",
    "omp": "contextlib.nullcontext",
}

THREADS = """
before = (_threading.threading_layer(), type(_threading.parallel_guard).__name__)
assert before == (None, "lock"), before
_threading.prepare()
after_prepare = _threading.threading_layer()
expected = digest(loss(P, T))  # main thread alone
numba.set_num_threads(1)
assert digest(loss(P, T)) == expected  # one thread: same bits
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
hammer(8, 50)
assert os.environ.get("NUMBA_THREADING_LAYER") == {env!r}  # prepare() leaves the env alone
report(after_prepare=after_prepare)
"""


@pytest.mark.parametrize("layer", [None, "tbb", "workqueue", "omp"])
def test_eight_threads_at_once(where, layer):
    """8 threads x 50 calls on 2e6 elements: no abort, and the bits of a single-threaded call.

    Also: prepare() makes TBB the layer in this venv (and makes a user's "tbb" loadable),
    and a user's "workqueue" or "omp" is respected (then nothing is loaded, and the layer is
    known only after the first launch).
    """
    info = run(where, THREADS.format(env=layer), layer)
    assert info["layer"] == info["numba_layer"] == EXPECTED[layer]
    assert info["guard"] == GUARD[info["layer"]]
    assert info["fork_safe"] is (info["layer"] != "omp")
    if info["layer"] == "tbb":
        assert info["tbb_library"].endswith("libtbb.so.12"), info
        assert info["after_prepare"] == "tbb"
    else:  # the user's choice: nothing loaded
        assert info["tbb_library"] is None, info
        assert info["after_prepare"] is None


FORK_POOL = """
expected = digest(loss(P, T))  # used in the main thread...
hammer(2, 3)  # ...and in other threads
with mp.get_context("fork").Pool(2) as pool:
    got = pool.map(task, range(6), chunksize=1)
assert got == [expected] * 6, got
assert digest(loss(P, T)) == expected  # the parent still works
report()
"""


@pytest.mark.parametrize("layer", [None, "workqueue"], ids=["default", "workqueue"])
def test_fork_pool_after_use(where, layer):
    """A process that ran kernels (main thread and threads) forks a Pool whose workers run them."""
    info = run(where, FORK_POOL, layer)
    assert info["layer"] == EXPECTED[layer]
    assert info["fork_safe"] is True


GRANDCHILD = """
expected = digest(loss(P, T))
hammer(2, 2)
ctx = mp.get_context("fork")


def grandchild(q):
    q.put(digest(loss(P, T)))


def child(q):
    q.put(digest(loss(P, T)))
    g = ctx.Process(target=grandchild, args=(q,))
    g.start()
    g.join(40)
    if g.exitcode is None:
        g.kill()
    sys.exit(0 if g.exitcode == 0 else 1)


q = ctx.Queue()
c = ctx.Process(target=child, args=(q,))
c.start()
got = [q.get(timeout=50), q.get(timeout=50)]
c.join(50)
assert c.exitcode == 0, c.exitcode
assert got == [expected] * 2, got
report()
"""


@pytest.mark.parametrize("layer", [None, "workqueue"], ids=["default", "workqueue"])
def test_grandchild(where, layer):
    """Fork of a fork: the grandchild runs the kernel (GNU OpenMP would hang here)."""
    info = run(where, GRANDCHILD, layer)
    assert info["layer"] == EXPECTED[layer]


FORK_WHILE_RUNNING = """
value, _ = check(loss(P, T))
stop = threading.Event()
errors = []


def spin():
    try:
        while not stop.is_set():
            assert np.float32(loss(P, T)[0]) == value
    except BaseException as e:
        errors.append(repr(e))


bg = threading.Thread(target=spin)
bg.start()
ctx = mp.get_context("fork")
try:
    for _ in range(6):  # each fork waits for the kernel in flight in `bg`
        p = ctx.Process(target=task, args=(0,))
        p.start()
        p.join(30)
        if p.exitcode is None:
            p.kill()
            raise AssertionError("forked child hung")
        assert p.exitcode == 0, p.exitcode
finally:
    stop.set()
    bg.join()
assert not errors, errors
report()
"""


@pytest.mark.parametrize("layer", [None, "workqueue"], ids=["default", "workqueue"])
def test_fork_while_another_thread_runs_a_kernel(where, layer):
    """The at-fork guard makes a fork wait for kernels in flight in other threads."""
    info = run(where, FORK_WHILE_RUNNING, layer)
    assert info["layer"] == EXPECTED[layer]


FORK_WHILE_COMPILING = """
import time

_threading.prepare()  # from the main thread, as docs/threading.md advises
p64, t64 = P.astype(np.float64), T.astype(np.float64)  # a signature no other scenario compiles
done = []
first = threading.Thread(target=lambda: done.append(check(loss(p64, t64))))
first.start()
guard = _threading.parallel_guard
while first.is_alive() and not (_threading._inflight or getattr(guard, "locked", bool)()):
    time.sleep(0.0005)
inside = first.is_alive()  # the other thread is inside its first call (compiling)
child = mp.get_context("fork").Process(target=task, args=(0,))
child.start()  # waits for the other thread's call to finish
child.join(40)
if child.exitcode is None:
    child.kill()
    raise AssertionError("forked child hung")
assert child.exitcode == 0, child.exitcode
first.join()
assert len(done) == 1
report(inside=inside)
"""


@pytest.mark.parametrize("layer", [None])
def test_fork_while_another_thread_compiles(where, layer):
    """A fork during another thread's first call (compiling) neither stalls nor breaks the child."""
    info = run(where, FORK_WHILE_COMPILING, layer, timeout=45)
    assert info["layer"] == EXPECTED[layer]


SPAWN_POOL = """
expected = digest(loss(P, T))
with mp.get_context({method!r}).Pool(2) as pool:
    got = pool.map(task, range(2), chunksize=1)
assert got == [expected] * 2, got
report()
"""


@pytest.mark.parametrize(
    ("layer", "method"), [(None, "spawn"), (None, "forkserver"), ("omp", "forkserver")]
)
def test_spawn_and_forkserver_pools(where, layer, method):
    """spawn and forkserver work under every layer (the advice for users who force omp)."""
    info = run(where, SPAWN_POOL.format(method=method), layer, timeout=90)
    assert info["layer"] == EXPECTED[layer]


# Table only: what Numba does without fastloss's guard.
UNGUARDED = """
value, grad = check(loss(P, T))
_threading.parallel_guard = contextlib.nullcontext()
hammer(8, 50)
report()
"""


def _describe(code, out: str, err: str, seconds: float, timeout: float) -> str:
    """One table cell: what a scenario did."""
    text = out + err
    notes = [
        msg
        for key, msg in (
            ("already using GNU OpenMP", "omp: child SIGTERM"),
            ("Concurrent access has been detected", "workqueue: concurrent access"),
            ("Attempted to fork from a non-main thread", "tbb: fork from non-main thread"),
        )
        if key in text
    ]
    results = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if code == 0 and results:
        layer = json.loads(results[-1][len("RESULT ") :])["layer"]
        cell = f"OK ({layer}, {seconds:.1f} s)"
    elif code is None:
        cell = f"**hung** (killed at {timeout:.0f} s)"
    elif code < 0:
        cell = f"**killed by {signal.Signals(-code).name}**"
    else:
        cell = f"**exit {code}**"
    return cell + "".join(f"; {n}" for n in notes)


def _table(layers=(None, "tbb", "omp", "workqueue"), timeout: float = 40.0, rows=None) -> None:
    """Print the scenario x layer table of docs/threading.md (python tests/test_processes.py)."""
    import tempfile
    import time

    scenarios = [
        ("8 threads x 50 calls at once", lambda lay: THREADS.format(env=lay)),
        ("same, guard removed (Numba alone)", lambda lay: UNGUARDED),
        ("fork Pool after use (main thread and threads)", lambda lay: FORK_POOL),
        ("grandchild (fork of a fork)", lambda lay: GRANDCHILD),
        ("6 forks while another thread runs kernels", lambda lay: FORK_WHILE_RUNNING),
        ("fork while another thread compiles", lambda lay: FORK_WHILE_COMPILING),
        ("spawn Pool", lambda lay: SPAWN_POOL.format(method="spawn")),
        ("forkserver Pool", lambda lay: SPAWN_POOL.format(method="forkserver")),
    ]
    names = [
        f"`NUMBA_THREADING_LAYER={lay}`" if lay else "not set (fastloss default)" for lay in layers
    ]
    where = Path(tempfile.mkdtemp(prefix="fastloss-scenarios-"))
    print("| scenario | " + " | ".join(names) + " |")
    print("|---" * (len(layers) + 1) + "|")
    for name, make in scenarios if rows is None else [scenarios[i] for i in rows]:
        cells = []
        for lay in layers:
            t0 = time.perf_counter()
            code, out, err = execute(where, make(lay), lay, timeout)
            cells.append(_describe(code, out, err, time.perf_counter() - t0, timeout))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    _table()
