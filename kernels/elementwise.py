"""The factory of elementwise losses: one declaration, every kernel.

An elementwise loss is declared by an :class:`ElementwiseSpec`: its two point functions
(``value`` and ``value_grad`` at one element), how many arrays it reads per element, how many
gradients it writes, its runtime scalar parameters and its compile-time flags. From that the
factory builds, per CPU target:

``reduce_value``       forward only, returns the float64 sum of the element losses
``reduce_value_grad``  fused forward+backward: writes ``grad = scale * dloss/dx`` and returns
                       the float64 sum
``map_value``          writes the element losses (``reduction="none"``)
``map_value_grad``     writes the element losses and the scaled gradient

each in a serial and a ``prange`` variant, and, with ``weighted``, variants that multiply every
element's loss and gradient by a weight array.

Why generated source: Numba cannot cache a kernel that closes over another jitted function (the
closure's pickle holds a per-process id, so every process misses the cache), and it refuses to
cache ``exec``-generated code. So the factory writes each kernel module as a real ``.py`` file
in a versioned directory and imports it: the point functions are plain module globals there,
``cache=True`` works, and the directory name carries a hash of every kernel source so an edit
to a point function can never be served from a stale cache.

Deterministic reductions: the data is cut into blocks of ``BLOCK`` elements, a constant that
does not depend on the thread count; each block sums in float64 and the block partials are
added in block order. The serial and the parallel variant run the same block code, so the loss
has the same bits whatever the thread count and whichever variant ran.

Logarithmic factors (``ElementwiseSpec.log_factor``): a loss of the form ``v + log(f)`` with
``f`` in ``[1/2, 1]`` (log-cosh: ``|d| + log((1 + e**(-2|d|)) / 2)``) is reduced without a
logarithm per element: ``sum(log f) = log(prod f)``, the product taken in float64 over one stage
(``1.5 f`` in ``[0.75, 1.5]``: ``STAGE`` factors stay between ``2**-425`` and ``2**599``) and
one ``log`` per stage. That is more accurate than a float32 ``log`` per element (the product's
rounding is float64's) and takes the logarithm, a third of log-cosh's arithmetic, out of the
element loop. Elementwise outputs (``reduction="none"``), weighted kernels and the CUDA kernels
form ``v + log(f)`` per element.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numba

# Elements per reduction block: fixed, never derived from the thread count.
BLOCK = 1 << 16
# Elements per stage of a staged sum (see ElementwiseSpec.staged_sum): fits in L1 cache.
STAGE = 1 << 10
# Scale of the logarithmic factors in a stage's product (see ElementwiseSpec.log_factor).
FACTOR_SCALE = 1.5

KINDS = ("reduce_value", "reduce_value_grad", "map_value", "map_value_grad")


@dataclass(frozen=True, eq=False)
class ElementwiseSpec:
    """Declaration of one elementwise loss for the kernel factory.

    Parameters
    ----------
    name
        Identifier of the kernel family (used in generated file names).
    value, value_grad
        Jitted point functions. ``value(a0, ..., p0, ..., FLAG0, ...)`` returns the loss of one
        element; ``value_grad`` returns ``(loss, d0, ...)`` with one derivative per entry of
        ``grads``.
    arrays
        Number of arrays read per element (input, target[, var]).
    grads
        Indices (into the arrays) of the arrays whose gradients ``value_grad`` returns.
    params
        Names of runtime scalar parameters, passed in the compute dtype.
    flags
        Names of compile-time boolean options; each combination is its own kernel module.
    staged_sum
        Reduce in two loops per stage of ``STAGE`` elements: the element loop stores the losses,
        a second loop adds them in float64. For losses whose element work is heavy (exp, log):
        a float64 accumulator in the element loop halves its float32 vector width.
    log_factor
        The point functions return the loss as two numbers ``v, f`` (``v, f, d0, ...`` from
        ``value_grad``): the element's loss is ``v + log(f)``, and ``f`` lies in ``[1/2, 1]``
        (or is NaN). Unweighted reductions multiply the ``f`` of a stage in float64 and take one
        logarithm per stage (see the module docstring). Requires ``staged_sum``.

    Specs compare and hash by identity: each is declared once, in its family's module.
    """

    name: str
    value: object
    value_grad: object
    arrays: int = 2
    grads: tuple[int, ...] = (0,)
    params: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    staged_sum: bool = False
    log_factor: bool = False

    def __post_init__(self) -> None:
        if self.log_factor and not self.staged_sum:
            raise ValueError(f"{self.name}: log_factor needs staged_sum")


def _source_hash() -> str:
    """Hash of every kernel source file and of the Numba version: the cache key of generated
    modules (Numba does not track edits to callees in other files)."""
    digest = hashlib.sha256(numba.__version__.encode())
    here = Path(__file__).resolve().parent
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False


_generated_dir: Path | None = None


def generated_dir() -> Path:
    """Directory holding the generated kernel modules (and, next to them, Numba's cache).

    ``FASTLOSS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fastloss`` (``~/.cache/fastloss``),
    else a per-user directory under the system temporary directory; inside it a directory named
    for the fastloss version and the hash of the kernel sources.
    """
    global _generated_dir
    if _generated_dir is not None:
        return _generated_dir
    from fastloss import __version__

    leaf = f"kernels-{__version__}-{_source_hash()}"
    roots = []
    if os.environ.get("FASTLOSS_CACHE_DIR"):
        roots.append(Path(os.environ["FASTLOSS_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots.append(Path(xdg) / "fastloss")
    roots.append(Path(tempfile.gettempdir()) / f"fastloss-{os.getuid()}")
    for root in roots:
        if _writable(root / leaf):
            _generated_dir = root / leaf
            return _generated_dir
    raise OSError(f"fastloss: no writable cache directory among {[str(r) for r in roots]}")


def _args(spec: ElementwiseSpec, kind: str, weighted: bool) -> tuple[list[str], list[str]]:
    arrays = [f"a{i}" for i in range(spec.arrays)] + (["w"] if weighted else [])
    params = [f"p{i}" for i in range(len(spec.params))]
    outputs = []
    if kind.startswith("map"):
        outputs.append("loss")
    if kind.endswith("grad"):
        outputs += ["scale"] + [f"g{j}" for j in range(len(spec.grads))]
    return arrays + params + outputs, arrays


def point_statements(
    spec: ElementwiseSpec,
    point_args: list[str],
    with_grad: bool,
    weight: str | None,
    combine: bool = True,
) -> list[str]:
    """The statements of one element, for every target's kernels: ``v`` (and ``d0, ...``)
    from the point function, multiplied by the element's ``weight`` expression if given.

    With ``spec.log_factor``, ``combine`` forms the element's loss ``v = v + log(f)``; without
    it ``v`` and ``f`` are left apart, for a stage's product (unweighted only)."""
    derivs = [f"d{j}" for j in range(len(spec.grads))]
    results = ["v"] + (["f"] if spec.log_factor else []) + (derivs if with_grad else [])
    function = "value_grad" if with_grad else "value"
    lines = [f"{', '.join(results)} = {function}({', '.join(point_args)})"]
    if spec.log_factor and combine:
        lines.append("v = v + log(f)")
    elif spec.log_factor and weight is not None:
        raise ValueError(f"{spec.name}: a weighted element's loss combines its log factor")
    if weight is not None:
        lines.append(f"v = v * {weight}")
        lines += [f"{d} = {d} * {weight}" for d in derivs] if with_grad else []
    return lines


def _kernel_source(spec: ElementwiseSpec, kind: str, parallel: bool, weighted: bool) -> str:
    signature, arrays = _args(spec, kind, weighted)
    with_grad = kind.endswith("grad")
    reduce = kind.startswith("reduce")
    staged = reduce and spec.staged_sum
    grads = [f"g{j}" for j in range(len(spec.grads))]
    sliced = arrays + (["loss"] if not reduce else []) + (grads if with_grad else [])
    # The element loop reads s_<name>[i]: the block's slice, or the stage's slice of it.
    view = "t_" if staged else "s_"
    point_args = [f"{view}{a}[i]" for a in arrays if a != "w"]
    point_args += [f"p{i}" for i in range(len(spec.params))]
    point_args += [f"FLAG_{f.upper()}" for f in spec.flags]
    name = f"{kind}_{'parallel' if parallel else 'serial'}"

    lines = [
        f"@njit(parallel={parallel}, **KERNEL_OPTIONS)",
        f"def {name}({', '.join(signature)}):",
        "    n = a0.size",
        "    nblocks = (n + BLOCK - 1) // BLOCK",
    ]
    if reduce:
        lines.append("    partials = np.empty(nblocks, np.float64)")
    lines += [
        f"    for b in {'prange' if parallel else 'range'}(nblocks):",
        "        lo = b * BLOCK",
        "        hi = min(lo + BLOCK, n)",
    ]
    # Slices, not a signed range(lo, hi) index: no wraparound code in the inner loop.
    lines += [f"        s_{a} = {a}[lo:hi]" for a in sliced]
    if reduce:
        lines.append("        acc = 0.0")
    # Unweighted reductions of a log-factor loss multiply the factors of a stage.
    product = staged and spec.log_factor and not weighted
    weight = f"{view}w[i]" if weighted else None
    body = point_statements(spec, point_args, with_grad, weight, combine=not product)
    if with_grad:
        body += [f"{view}g{j}[i] = d{j} * scale" for j in range(len(spec.grads))]
    if staged:
        # The element loop stays in the input's precision (full vector width) and stores the
        # losses; a second loop adds them in float64, in the same fixed order every run.
        lines.append("        stage = np.empty(STAGE, a0.dtype)")
        if product:
            lines.append("        stage_f = np.empty(STAGE, a0.dtype)")
        lines += [
            "        for c in range(0, hi - lo, STAGE):",
            "            e = min(c + STAGE, hi - lo)",
        ]
        lines += [f"            t_{a} = s_{a}[c:e]" for a in sliced]
        lines.append("            for i in range(e - c):")
        stores = ["stage[i] = v"] + (["stage_f[i] = f"] if product else [])
        lines += ["                " + line for line in body + stores]
        if product:
            lines += [
                "            prod = 1.0",
                "            for i in range(e - c):",
                "                acc += np.float64(stage[i])",
                "                prod *= np.float64(stage_f[i]) * FACTOR_SCALE",
                "            acc += log(prod) - (e - c) * LOG_FACTOR_SCALE",
            ]
        else:
            lines += [
                "            for i in range(e - c):",
                "                acc += np.float64(stage[i])",
            ]
    else:
        lines.append("        for i in range(hi - lo):")
        lines += ["            " + line for line in body]
        lines.append("            acc += np.float64(v)" if reduce else "            s_loss[i] = v")
    if reduce:
        lines += [
            "        partials[b] = acc",
            "    total = 0.0",
            "    for b in range(nblocks):",
            "        total += partials[b]",
            "    return total",
        ]
    return "\n".join(lines) + "\n"


def module_source(spec: ElementwiseSpec, flags: tuple[bool, ...], weighted: bool) -> str:
    """Source of the generated module holding every kernel of ``spec`` for these options."""
    value, value_grad = spec.value, spec.value_grad
    header = [
        f'"""Kernels of {spec.name} generated by fastloss.kernels.elementwise; do not edit."""',
        "",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        "from fastloss.kernels._jit import KERNEL_OPTIONS",
        "from fastloss.kernels.vmath import log",
        f"from {value.__module__} import {value.__name__} as value",
        f"from {value_grad.__module__} import {value_grad.__name__} as value_grad",
        "",
        f"BLOCK = {BLOCK}",
        f"STAGE = {STAGE}",
        f"FACTOR_SCALE = {FACTOR_SCALE!r}",
        f"LOG_FACTOR_SCALE = {math.log(FACTOR_SCALE)!r}",
    ]
    for name, v in zip(spec.flags, flags, strict=True):
        header.append(f"FLAG_{name.upper()} = {bool(v)}")
    parts = ["\n".join(header) + "\n"]
    for kind in KINDS:
        for parallel in (False, True):
            parts.append(_kernel_source(spec, kind, parallel, weighted))
    return "\n\n".join(parts)


_modules: dict[tuple, ModuleType] = {}
_lock = threading.Lock()


def load_module(stem: str, source: str) -> ModuleType:
    """Write ``source`` as ``<generated_dir>/<stem>.py`` (if it changed) and import it."""
    path = generated_dir() / f"{stem}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: concurrent processes never see a partial file
    mod_name = f"fastloss_generated.{stem}"
    import_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(import_spec)
    sys.modules[mod_name] = module
    import_spec.loader.exec_module(module)
    return module


def kernels(spec: ElementwiseSpec, flags: tuple[bool, ...] = (), weighted: bool = False):
    """The generated module of ``spec`` for these flag values (memoised, thread-safe).

    Its attributes ``reduce_value_serial``, ``reduce_value_parallel``, ... are Numba dispatchers
    that compile on first call and cache on disk.
    """
    key = (spec, flags, weighted)
    module = _modules.get(key)
    if module is not None:
        return module
    with _lock:
        module = _modules.get(key)
        if module is not None:
            return module
        if len(flags) != len(spec.flags):
            raise ValueError(f"{spec.name}: expected flags {spec.flags}, got {flags}")
        stem = spec.name + ("_weighted" if weighted else "")
        stem += "".join(f"_{name}{int(v)}" for name, v in zip(spec.flags, flags, strict=True))
        module = load_module(stem, module_source(spec, flags, weighted))
        _modules[key] = module
        return module
