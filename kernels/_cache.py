"""Where fastloss's compiled kernels live, and how they are named so a cache is never stale.

One directory holds everything fastloss compiles: the generated kernel modules of the factories
and Numba's cache of every kernel, generated or written out in ``kernels/``. It is found as

1. ``$FASTLOSS_CACHE_DIR``, if set;
2. the user's cache directory: ``$XDG_CACHE_HOME/fastloss`` or ``~/.cache/fastloss`` (Linux),
   ``~/Library/Caches/fastloss`` (macOS), ``%LOCALAPPDATA%\\fastloss\\Cache`` (Windows);
3. ``fastloss-<user>`` under the system temporary directory, created with mode 0700 and used
   only if the current user owns it (another user's directory there could feed this process
   code);
4. if none of them is writable: no cache. Kernels compile in memory for this process, and one
   warning says so.

Inside it, ``kernels-<hash>`` is named by a hash of every source file of ``kernels/`` and of the
Numba, llvmlite and Python versions. Numba checks a cached function against its own file only,
not the files of the functions it calls (an edit to ``vmath.py`` would leave every kernel that
inlines its ``exp`` stale); the hash changes with any of them. A generated module is named by
its declaration and by :func:`code_hash` of its point function and of everything that calls,
so a loss declared under the same name with another point function (a user's script edited
between two runs) is never served from the other's cache.

Directories left by earlier versions of the same installation are removed (once unused for an
hour: a process of the earlier version may still be running); those of other installations
sharing the root are removed once unused for 30 days.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
import types
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORIGIN = "origin.txt"
USED = ".used"
SAME_INSTALL_GRACE_S = 3600.0
OTHER_INSTALL_GRACE_S = 30 * 86400.0

_lock = threading.RLock()
_resolved = False
_directory: Path | None = None


def source_hash() -> str:
    """Hash of every kernel source file and of the Numba, llvmlite and Python versions."""
    import llvmlite
    import numba

    digest = hashlib.sha256(
        f"{numba.__version__} {llvmlite.__version__} {sys.version_info[:2]}".encode()
    )
    for path in sorted(HERE.rglob("*.py")):
        digest.update(path.relative_to(HERE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def user_cache_root() -> Path:
    """The platform's per-user cache directory for fastloss (not created)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData")
        return Path(base) / "fastloss" / "Cache"
    if sys.platform == "darwin":
        return Path(os.path.expanduser("~")) / "Library" / "Caches" / "fastloss"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "fastloss"


def _user_name() -> str:
    try:
        import getpass

        name = getpass.getuser()
    except Exception:  # no name for this uid (containers), no USERNAME on Windows
        name = str(os.getpid())
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _private_temp_root() -> Path | None:
    """``fastloss-<user>`` under the temporary directory: mode 0700 and owned by us, or None."""
    root = Path(tempfile.gettempdir()) / f"fastloss-{_user_name()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.lstat()
    except OSError:
        return None
    if root.is_symlink():
        return None
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None:
        if info.st_uid != geteuid() or info.st_mode & 0o077:
            return None
    return root


def roots() -> list[Path]:
    """The candidate cache roots, in order of preference."""
    candidates = []
    if os.environ.get("FASTLOSS_CACHE_DIR"):
        candidates.append(Path(os.environ["FASTLOSS_CACHE_DIR"]).expanduser())
    candidates.append(user_cache_root())
    return candidates


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False


def directory() -> Path | None:
    """The versioned directory of this installation's kernels, or None where no directory is
    writable (then nothing is cached, and one warning has said so)."""
    global _resolved, _directory
    if _resolved:
        return _directory
    with _lock:
        if _resolved:
            return _directory
        leaf = f"kernels-{source_hash()}"
        found = None
        for root in roots():
            if _writable(root / leaf):
                found = root / leaf
                break
        else:
            root = _private_temp_root()
            if root is not None and _writable(root / leaf):
                found = root / leaf
        if found is None:
            warnings.warn(
                "fastloss: no writable cache directory (tried "
                + ", ".join(str(r) for r in roots())
                + " and the temporary directory); kernels compile for this process only. "
                "Set FASTLOSS_CACHE_DIR to a writable directory to keep them.",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            _mark(found)
            _prune(found)
        _directory = found
        _resolved = True
        return _directory


def _mark(leaf: Path) -> None:
    """Record which installation the directory belongs to, and that it is in use."""
    try:
        origin = leaf / ORIGIN
        if not origin.exists():
            origin.write_text(str(HERE))
        (leaf / USED).touch()
    except OSError:
        pass


def _prune(leaf: Path) -> None:
    now = time.time()
    for sibling in leaf.parent.glob("kernels-*"):
        if sibling == leaf or not sibling.is_dir():
            continue
        try:
            origin = (sibling / ORIGIN).read_text()
        except OSError:
            origin = ""  # a layout before origin files: an earlier version
        try:
            used = (sibling / USED).stat().st_mtime
        except OSError:
            used = sibling.stat().st_mtime
        same = origin in ("", str(HERE)) or not Path(origin).exists()
        grace = SAME_INSTALL_GRACE_S if same else OTHER_INSTALL_GRACE_S
        if now - used > grace:
            shutil.rmtree(sibling, ignore_errors=True)


def numba_directory() -> Path | None:
    """Where Numba caches fastloss's compiled kernels: inside :func:`directory`."""
    leaf = directory()
    return None if leaf is None else leaf / "numba"


def code_hash(function) -> str:
    """Hash of the code of ``function`` (a Python function or a Numba dispatcher) and of
    every function it reaches through its globals and closure, with the values of the plain
    constants it reads: the name of a generated module."""
    digest = hashlib.sha256()
    _hash_function(function, digest, set())
    return digest.hexdigest()[:12]


_CONSTANTS = (bool, int, float, complex, str, bytes, type(None))


def _hash_function(function, digest, seen: set) -> None:
    function = getattr(function, "py_func", function)
    code = getattr(function, "__code__", None)
    if code is None or id(function) in seen:
        digest.update(repr(getattr(function, "__qualname__", type(function))).encode())
        return
    seen.add(id(function))
    digest.update(f"{function.__module__}.{function.__qualname__}".encode())
    names: set[str] = set()
    _hash_code(code, digest, names)
    cells = function.__closure__ or ()
    for cell in cells:
        _hash_value(cell.cell_contents, digest, seen)
    for default in function.__defaults__ or ():
        _hash_value(default, digest, seen)
    for name in sorted(names):
        if name in function.__globals__:
            digest.update(name.encode())
            _hash_value(function.__globals__[name], digest, seen)


def _hash_code(code: types.CodeType, digest, names: set) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_argcount)).encode())
    names.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, digest, names)
        else:
            digest.update(repr(const).encode())


def _hash_value(value, digest, seen: set) -> None:
    if isinstance(value, _CONSTANTS):
        digest.update(repr(value).encode())
    elif isinstance(value, tuple):
        for item in value:
            _hash_value(item, digest, seen)
    elif isinstance(value, types.ModuleType):
        digest.update(value.__name__.encode())
    elif hasattr(getattr(value, "py_func", value), "__code__"):
        _hash_function(value, digest, seen)
    else:
        digest.update(type(value).__qualname__.encode())
        if hasattr(value, "dtype") and hasattr(value, "tobytes"):  # NumPy scalars and arrays
            digest.update(str(value.dtype).encode() + value.tobytes())


_installed = False


def install() -> None:
    """Make Numba cache the functions of ``kernels/`` and of the generated modules in
    :func:`numba_directory`, and, where there is none, compile them without a cache. Called
    by each kernel module before it declares a cached function."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from fastloss.kernels import _jit

        target = numba_directory()
        if target is None:
            _jit.KERNEL_OPTIONS["cache"] = False
        else:
            from numba.core import caching

            impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
            impl._locator_classes.insert(0, _locator_class(target))
        _installed = True


def enabled() -> bool:
    """Whether compiled kernels are cached on disk (after :func:`install`)."""
    install()
    return directory() is not None


def _locator_class(target: Path):
    from numba.core import caching

    generated = directory()

    class FastlossLocator(caching.InTreeCacheLocator):
        """Numba's cache of fastloss's kernels: under the versioned cache directory."""

        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            origin = Path(py_file).resolve().parent
            self._cache_path = str(target / ("generated" if origin == generated else "kernels"))

        @classmethod
        def from_function(cls, py_func, py_file):
            try:
                origin = Path(py_file).resolve().parent
            except (OSError, ValueError):
                return None
            if origin != generated and origin != HERE and HERE not in origin.parents:
                return None
            return super().from_function(py_func, py_file)

    return FastlossLocator
