"""Numba threading layer: make the safe one load, respect the user's choice, adapt to the rest.

Numba picks its threading layer once per process, at the first parallel launch by anyone (more
exactly: when the first ``parallel=True`` function compiles or loads from the cache, or at the
first ``numba.get_num_threads()``/``set_num_threads()``). Its default order is tbb, omp,
workqueue, but with ``pip install numba tbb`` in a virtual environment ``libtbb.so.12`` is not on
the loader's path, so Numba silently takes GNU OpenMP (``omp``), which kills forked children
that call a kernel. ``workqueue`` aborts the process when two threads enter a kernel at once.
TBB survives both. See docs/threading.md.

The dispatch code uses this module so::

    _threading.prepare()                 # once, before the first parallel launch
    with _threading.parallel_guard:      # looked up on the module at every launch
        result = kernel(*args)
    if not _threading.layer_known:
        _threading.after_launch()

This module is pure Python and does not import Numba until :func:`prepare` runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time

__all__ = [
    "FORK_WAIT_TIMEOUT",
    "after_launch",
    "fork_safe",
    "layer",
    "layer_known",
    "parallel_guard",
    "prepare",
    "tbb_library",
    "threading_layer",
]

#: True once the threading layer in use is known (after the first parallel launch).
layer_known: bool = False
#: The layer in use ("tbb", "omp" or "workqueue") once known, else None.
layer: str | None = None
#: Whether a process that has run a parallel kernel may ``fork()`` children that run kernels
#: too. True for tbb and workqueue, False for omp (GNU OpenMP kills or hangs such children;
#: use the "spawn" or "forkserver" start method). True before the first parallel launch.
fork_safe: bool = True
#: The TBB library that :func:`prepare` loaded (a path, or the bare name when the system
#: loader found it), or None.
tbb_library: str | None = None

#: Longest wait, in seconds, of a ``fork()`` for kernels running in other threads. Past it the
#: fork goes ahead (as it would without fastloss).
FORK_WAIT_TIMEOUT: float = 30.0

# Serialises launches until the layer is known, and for good under workqueue (the same object,
# so that threads already queued on it and later ones exclude each other).
_startup_lock = threading.Lock()

#: Context manager around every parallel launch: a lock until the layer is known, then a lock
#: under workqueue, a fork-aware reader guard under tbb, ``contextlib.nullcontext()`` otherwise.
parallel_guard: contextlib.AbstractContextManager = _startup_lock

_prepared = False
_prepare_lock = threading.Lock()
_prepare_owner: int | None = None  # the thread inside prepare(), which a fork must not wait for

# Fork guard state. Kernels under tbb register in ``_inflight`` (list.append/pop are atomic);
# a fork sets ``_fork_pending``, waits until ``_inflight`` is empty, forks, and clears it.
_inflight: list = []
_fork_pending = False
_fork_done = threading.Event()
_fork_done.set()
_fork_lock = threading.Lock()  # one fork at a time goes through the guard
_fork_held: list = []  # the locks the fork in progress holds
# After kernels drain, a fork under tbb waits this long more: TBB's worker threads go back to
# sleep through a mutex that a child would inherit locked if the fork caught them there.
_FORK_SETTLE = 0.002


class _ForkGuard:
    """Reader side of the fork guard: kernels run concurrently, a fork waits for them.

    Correct under the GIL and with per-object locking (free-threaded builds): a kernel
    registers (append) before it reads ``_fork_pending``; a fork sets ``_fork_pending`` before
    it reads ``_inflight``. Either the kernel sees the fork and steps back, or the fork sees
    the kernel and waits for it.
    """

    __slots__ = ()

    def __enter__(self):
        _inflight.append(None)
        if _fork_pending:
            _wait_for_fork()

    def __exit__(self, exc_type, exc, tb):
        _inflight.pop()


def _wait_for_fork() -> None:
    while _fork_pending:
        _inflight.pop()
        _fork_done.wait(FORK_WAIT_TIMEOUT)
        _inflight.append(None)


_fork_guard = _ForkGuard()


def _library_names() -> tuple[str, ...]:
    if sys.platform.startswith("linux"):
        return ("libtbb.so.12",)
    if sys.platform == "darwin":
        return ("libtbb.12.dylib",)
    if sys.platform == "win32":
        return ("tbb12.dll",)
    return ()


def _candidates(names: tuple[str, ...]):
    """Paths where a pip, conda or system TBB may be, best first (lazily: cheap ones first)."""
    lib_dirs = ("lib", os.path.join("Library", "bin"), "bin")  # POSIX venv/conda; conda Windows
    for prefix in (sys.prefix, sys.exec_prefix):
        for sub in lib_dirs:
            for name in names:
                yield os.path.join(prefix, sub, name)
    try:
        from importlib import metadata

        dist = metadata.distribution("tbb")
        for f in dist.files or ():
            if f.name in names:
                yield str(dist.locate_file(f))
    except Exception:
        pass
    for prefix in (sys.base_prefix, sys.base_exec_prefix):
        for sub in lib_dirs:
            for name in names:
                yield os.path.join(prefix, sub, name)
    for var in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        for d in os.environ.get(var, "").split(os.pathsep):
            if d:
                for name in names:
                    yield os.path.join(d, name)
    yield from names  # the system loader's own search


def _load_tbb() -> str | None:
    """Load a TBB that Numba accepts, with RTLD_GLOBAL; return what was loaded, or None."""
    names = _library_names()
    mode = getattr(ctypes, "RTLD_GLOBAL", 0)
    seen = set()
    for path in _candidates(names):
        if path in seen:
            continue
        seen.add(path)
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path, mode=mode)
        except OSError:
            continue
        try:
            version = lib.TBB_runtime_interface_version
            version.restype = ctypes.c_int
            version.argtypes = []
            if version() < 12060:  # Numba needs TBB 2021.6 or later
                return None  # now loaded under that soname: a later candidate cannot win
        except (AttributeError, OSError):
            return None
        return path
    return None


def _user_choices() -> set[str]:
    """The layers or behaviours the user asked Numba for (env and config), lower case."""
    found = set()
    env = os.environ.get("NUMBA_THREADING_LAYER")
    if env is not None:
        found.add(env.strip().lower())
    config = sys.modules.get("numba.core.config")  # .numba_config.yaml, assignments
    if config is not None:
        found.add(str(getattr(config, "THREADING_LAYER", "default")).strip().lower())
    found.discard("")
    found.discard("default")
    return found


def _current_layer() -> str | None:
    """The layer Numba already runs with, or None if no parallel launch happened yet."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    try:
        return str(numba.threading_layer())
    except Exception:  # ValueError: not initialised yet
        return None


def _tbb_comes_first(choices: set[str]) -> bool:
    """Whether Numba, with TBB loadable, will pick it for the user's settings."""
    if choices & {"tbb", "safe", "threadsafe", "forksafe"}:
        return True  # named behaviours try tbb first whatever the priority
    if choices:
        return False
    config = sys.modules.get("numba.core.config")
    priority = getattr(config, "THREADING_LAYER_PRIORITY", ["tbb"])
    return bool(priority) and priority[0] == "tbb"


def prepare() -> None:
    """Make Numba's TBB layer load, before the first parallel launch. Idempotent; never raises.

    If the user chose a layer (``NUMBA_THREADING_LAYER`` or Numba's config) that cannot be TBB,
    nothing is done. Otherwise a TBB library (the environment's own first, then the ``tbb``
    distribution's files, the base interpreter's prefix, ``LD_LIBRARY_PATH``, the system) is
    loaded with RTLD_GLOBAL, so that Numba's default order (tbb, omp, workqueue), or the user's
    "tbb", "safe", "threadsafe" or "forksafe", finds it. Numba's config and the environment
    are left as they are (children must not inherit a "tbb" they may be unable to load).

    When TBB will be picked, Numba's thread pool is started here and now, so that the layer is
    known before the first launch and TBB's fork handling belongs to the calling thread (Numba
    prepares TBB for ``fork()`` only in the thread that started the pool): call this first from
    the main thread. Under other layers the pool starts at the first parallel launch, as usual
    (a process that never ran a parallel kernel may fork even under omp).
    """
    global _prepared, _prepare_owner, tbb_library, _tbb_wanted
    if _prepared:
        return
    with _prepare_lock:
        if _prepared:
            return
        _prepare_owner = threading.get_ident()
        try:
            try:
                import numba
            except Exception:
                numba = None
            try:
                from numba.core import config

                config.reload_config()  # as the compiler would: env set since import counts
            except Exception:
                pass
            current = _current_layer()
            if current is not None:  # someone launched first: too late to choose
                _set_layer(current)
            else:
                choices = _user_choices()
                if not choices & {"omp", "workqueue"}:
                    _tbb_wanted = True
                    tbb_library = _load_tbb()
                    if tbb_library is not None and numba is not None:
                        if _tbb_comes_first(choices):
                            numba.get_num_threads()  # picks the layer, starts the pool
                            after_launch()
        except Exception:
            pass
        try:
            _register_at_fork()
        except Exception:
            pass
        _prepared = True
        _prepare_owner = None


#: True where fastloss looked for TBB (the user chose no other layer).
_tbb_wanted = False

_FALLBACK_MEANING = {
    "omp": "any number of threads may call fastloss at once, but a forked child process that "
    "calls a kernel dies or hangs: use the 'spawn' or 'forkserver' start method of "
    "multiprocessing",
    "workqueue": "calls from several Python threads run one at a time; forked children are safe",
}


def _warn_without_tbb(name: str) -> None:
    """One warning where TBB was wanted and Numba runs another layer (no TBB for the
    platform, or a broken install): which layer runs and what it means."""
    if not _tbb_wanted or name == "tbb":
        return
    import warnings

    meaning = _FALLBACK_MEANING.get(name, "see docs/threading.md")
    warnings.warn(
        f"fastloss: Intel TBB could not be loaded (pip install tbb; there is no wheel for "
        f"every platform), so Numba runs the kernels on its '{name}' threading layer: "
        f"{meaning}. See docs/threading.md.",
        RuntimeWarning,
        stacklevel=4,
    )


def _set_layer(name: str) -> None:
    global layer, layer_known, fork_safe, parallel_guard
    _warn_without_tbb(name)
    layer = name
    fork_safe = name != "omp"
    if name == "workqueue":
        parallel_guard = _startup_lock
    elif name == "tbb":
        parallel_guard = _fork_guard
    else:
        parallel_guard = contextlib.nullcontext()
    layer_known = True


def after_launch() -> None:
    """Record the layer Numba picked, after a parallel launch. Never raises."""
    if layer_known:
        return
    try:
        current = _current_layer()
        if current is not None:
            _set_layer(current)
    except Exception:
        pass


def threading_layer() -> str | None:
    """The threading layer in use, or None before the first parallel launch."""
    return layer


# --- fork -------------------------------------------------------------------------------------
# A fork waits for kernels running in other threads (and for a prepare() in progress): the
# child of a fork taken while a TBB kernel runs can hang, and under workqueue (or before the
# layer is known) the child would inherit ``_startup_lock`` held by a thread that does not exist
# there. The child then starts with fresh state.


def _before_fork() -> None:
    global _fork_pending
    try:
        deadline = time.monotonic() + FORK_WAIT_TIMEOUT
        for lock in (_fork_lock, _prepare_lock, _startup_lock):
            if lock is _prepare_lock and _prepare_owner == threading.get_ident():
                continue  # forking from inside prepare(): do not wait for ourselves
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _fork_held.append(lock)
        _fork_done.clear()
        _fork_pending = True  # kernels that have not started wait for the fork
        delay = 1e-5
        while _inflight and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(2 * delay, 1e-3)
        if layer == "tbb" and _FORK_SETTLE > 0:
            time.sleep(_FORK_SETTLE)
    except Exception:
        pass


def _after_fork_in_parent() -> None:
    global _fork_pending
    try:
        _fork_pending = False
        _fork_done.set()
        while _fork_held:
            _fork_held.pop().release()
    except Exception:
        pass


def _after_fork_in_child() -> None:
    global _fork_pending, _fork_done, _fork_lock, _prepare_lock, _startup_lock, parallel_guard
    try:
        _inflight.clear()  # only this thread exists here
        _fork_pending = False
        _fork_done = threading.Event()
        _fork_done.set()
        held = list(_fork_held)
        _fork_held.clear()
        for lock in held:
            lock.release()
        # A lock the fork could not take is held by a thread that is gone: replace it.
        if _fork_lock not in held:
            _fork_lock = threading.Lock()
        if _prepare_lock not in held:
            _prepare_lock = threading.Lock()
        if _startup_lock not in held:
            old, _startup_lock = _startup_lock, threading.Lock()
            if parallel_guard is old:
                parallel_guard = _startup_lock
    except Exception:
        pass


def _register_at_fork() -> None:
    """Install the fork hooks: at the end of the first prepare(), so after Numba's imports.

    Python runs "before" hooks in reverse order of registration. Registered after ``logging``
    (imported by Numba), ours run first, while the fork holds no other module's lock: a
    thread still compiling a kernel may need ``logging``'s lock to finish, and the fork waits
    for it.
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
