"""The factory of elementwise losses: one declaration, every kernel.

An elementwise loss is declared by an :class:`ElementwiseSpec`: its point function
(``value_grad``: the loss at one element and its derivatives), how many arrays it reads per
element, how many gradients it writes, its runtime scalar parameters and its compile-time flags.
From that the factory builds, per CPU target:

``reduce_value``       forward only: the element losses into the reduction state
``reduce_value_grad``  fused forward+backward: writes ``grad = scale * dloss/dx`` and reduces
``reduce_value_grad_hess``  the same, and writes ``hess = scale * d2loss/dx2`` (array 0 only)
``map_value``          writes the element losses (``reduction="none"``)
``map_value_grad``     writes the element losses and the scaled gradient
``map_value_grad_hess``  writes the element losses, the scaled gradient and second derivative
``stage_value[_grad]`` writes the values a reduction adds (the first elements of a run that
                       starts inside a segment, kept raw by its state)

the first six in a serial and a ``prange`` variant, and, with ``weighted``, variants that
multiply every element's loss and derivatives by a weight array. The forward-only kernels call
``value_grad`` too and leave the derivatives unused, and the gradient kernels leave the second
derivative unused (LLVM drops it): a loss is one definition, and its value and gradient do not
depend on whether its gradient or second derivative is asked for. The ``*_hess`` kernels exist
for specs declared with ``hess=True`` (the point function's last value is the second
derivative with respect to array 0).

Why generated source: Numba cannot cache a kernel that closes over another jitted function (the
closure's pickle holds a per-process id, so every process misses the cache), and it refuses to
cache ``exec``-generated code. So the factory writes each kernel module as a real ``.py`` file
in a versioned directory and imports it: the point functions are plain module globals there,
``cache=True`` works. The directory is named by a hash of every kernel source and the module by
a hash of its point function's code (:mod:`fastloss.kernels._cache`), so an edited or redefined
point function is never served from a stale cache.

Reductions follow the contract of :mod:`fastloss.kernels.reduction` (segments of 256 elements,
16 float64 lanes, a fixed tree): the loss's bits are a function of the element values and their
positions only, the same for the serial and the parallel variant, any thread count and any
chunking. A reduction kernel takes the state of the run it continues (``start``, the lanes of the
segment in progress, the stack of completed nodes) and returns the updated state with the sum.
Each parallel task (``TASK_SEGMENTS`` aligned segments) runs an element loop over a segment that
stores the element values in the input's precision (full vector width), then adds them into the
lanes a row of 16 at a time; its nodes join the run's stack in order.

Logarithmic factors (``ElementwiseSpec.log_factor``): a loss of the form ``v + log(f)`` with
``f`` in ``[1/2, 1]`` (log-cosh: ``|d| + log((1 + e**(-2|d|)) / 2)``) is reduced without a
logarithm per element: ``sum(log f) = log(prod f)``, the product of ``1.5 f`` taken in float64
lanes over one segment and one ``log`` per segment. That is more accurate than a float32 ``log``
per element (the product's rounding is float64's) and takes the logarithm, a third of log-cosh's
arithmetic, out of the element loop. Elementwise outputs (``reduction="none"``), weighted
kernels and the CUDA kernels form ``v + log(f)`` per element.

Broadcast operands (``patterned``): an operand other than array 0 that is a broadcast view
(zero strides) and whose C-order index collapses to two levels is passed as its own memory
``x`` (1-D) and a pattern ``x_pat = [outer_stride, inner_stride, inner, offset]`` (int64, in
elements): element ``i`` of the run is ``x[(g // inner) * outer_stride + (g % inner) *
inner_stride]`` with ``g = i + offset``. The kernels never divide per element: before the
element loop of a stage (reduce) or of a part of a block (map) they gather the operand into a
small buffer, one row segment at a time (one division per call, then a copy or a fill per
segment), and the element loop reads the buffer as it reads a slice of a contiguous operand;
the short head and rest loops of a reduction, and the stage kernels, index element by element
(``element_at``). The blocks, stages, lanes and tree are those of the unpatterned kernels, so
the bits are those of the operand materialised. Which operands are patterned is part of the
module (``_bc<positions>`` in its stem); a module without any is generated exactly as before.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

from fastloss.kernels import _cache
from fastloss.kernels._cache import code_hash
from fastloss.kernels._jit import SEGMENT, TASK_SEGMENTS
from fastloss.kernels.vector_width import with_full_width

# Elements per parallel block of the elementwise outputs (reduction="none").
BLOCK = 1 << 16
# Nodes a parallel task's stack can hold: a task covers at most TASK_SEGMENTS aligned segments.
TASK_STACK = 2 * TASK_SEGMENTS.bit_length() + 2

# Elements of a broadcast operand a map kernel gathers at a time (a part of a block that stays
# in cache between the gather and the element loop).
GATHER = 1 << 12

KINDS = ("reduce_value", "reduce_value_grad", "map_value", "map_value_grad")
HESS_KINDS = ("reduce_value_grad_hess", "map_value_grad_hess")


@dataclass(frozen=True, eq=False)
class ElementwiseSpec:
    """Declaration of one elementwise loss for the kernel factory.

    Parameters
    ----------
    name
        Identifier of the kernel family (used in generated file names).
    value_grad
        The jitted point function: ``value_grad(a0, ..., p0, ..., FLAG0, ...)`` returns
        ``(loss, d0, ...)`` at one element, one derivative per entry of ``grads`` (and, with
        ``hess``, ``(loss, d0, ..., h)``).
    arrays
        Number of arrays read per element (input, target[, var]).
    grads
        Indices (into the arrays) of the arrays whose gradients ``value_grad`` returns.
    params
        Names of runtime scalar parameters, passed in the compute dtype.
    flags
        Names of compile-time boolean options; each combination is its own kernel module.
    log_factor
        The point function returns the loss as two numbers ``v, f`` (``v, f, d0, ...``): the
        element's loss is ``v + log(f)``, and ``f`` lies in ``[1/2, 1]`` (or is NaN). Unweighted
        reductions multiply the ``f`` of a segment in float64 lanes and take one logarithm per
        segment (see the module docstring).
    stage_segments
        Segments (of 256 elements) whose values one element loop stores before the lane loops
        add them: 1 for memory-bound losses, more for those whose element work (exp, log)
        makes a longer element loop pay (measured, interleaved: bce-with-logits 1.5x -> 1.1x
        the time of a 1024-element float64 stage at 4 segments, mse 1.0x -> 1.4x).
    grad_factor
        A constant factor of every derivative, applied after the element's weight (mse's 2):
        ``2 (d w)`` stays finite where ``2 d`` overflows and ``w`` is 0, as torch evaluates it.
        It multiplies the second derivative too.
    hess
        The point function returns, as its last value, the second derivative of the element's
        loss with respect to array 0 (the input); the module then also holds the ``*_hess``
        kernels. Without it (a user's point function written before second derivatives) the
        point function returns the loss and the derivatives only.

    Specs compare and hash by identity: each is declared once, in its family's module.
    """

    name: str
    value_grad: object
    arrays: int = 2
    grads: tuple[int, ...] = (0,)
    params: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    log_factor: bool = False
    grad_factor: float = 1.0
    stage_segments: int = 1
    hess: bool = False


_stems: dict[ElementwiseSpec, str] = {}


def module_stem(
    spec: ElementwiseSpec,
    flags: tuple[bool, ...],
    weighted: bool,
    patterned: tuple[int, ...] = (),
) -> str:
    """The name of a generated module: the spec's name and options, and the hash of the code
    of its point function and of everything that calls (:func:`._cache.code_hash`), so a spec
    declared again with another point function gets a module of its own. ``patterned``: the
    positions (among the arrays, the weight last) of the broadcast operands (``_bc12``)."""
    digest = _stems.get(spec)
    if digest is None:
        digest = _stems.setdefault(spec, code_hash(spec.value_grad))
    stem = spec.name + ("_weighted" if weighted else "")
    stem += "".join(f"_{name}{int(v)}" for name, v in zip(spec.flags, flags, strict=True))
    if patterned:
        stem += "_bc" + "".join(str(j) for j in patterned)
    return f"{stem}-{digest}"


def point_statements(
    spec: ElementwiseSpec,
    point_args: list[str],
    with_grad: bool,
    weight: str | None,
    combine: bool = True,
    suffix: str = "",
    with_hess: bool = False,
) -> list[str]:
    """The statements of one element, for every target's kernels: ``v`` (and ``d0, ...``,
    and ``h`` with ``with_hess``) from the point function, multiplied by the element's
    ``weight`` expression if given; each name carries ``suffix`` (the lane of a row written out
    element by element).

    With ``spec.log_factor``, ``combine`` forms the element's loss ``v = v + log(f)``; without
    it ``v`` and ``f`` are left apart, for a segment's product (unweighted only)."""
    v, f = f"v{suffix}", f"f{suffix}"
    derivs = [f"d{j}{suffix}" for j in range(len(spec.grads))]
    # The forward-only kernels call value_grad too and leave its derivatives unused (LLVM
    # drops them): an element's loss is one instruction sequence, with or without gradient.
    unused = [f"_{d}" for d in derivs]
    results = [v] + ([f] if spec.log_factor else []) + (derivs if with_grad else unused)
    if with_hess and not (with_grad and spec.hess):
        raise ValueError(f"{spec.name}: a second derivative needs hess=True and the gradient")
    hess = [f"h{suffix}"] if with_hess else []
    if spec.hess:  # unpacked, and left unused (LLVM drops it) where not asked for
        results += hess or [f"_h{suffix}"]
    lines = [f"{', '.join(results)} = value_grad({', '.join(point_args)})"]
    if spec.log_factor and combine:
        lines.append(f"{v} = {v} + log({f})")
    elif spec.log_factor and weight is not None:
        raise ValueError(f"{spec.name}: a weighted element's loss combines its log factor")
    if weight is not None:
        lines.append(f"{v} = {v} * {weight}")
        lines += [f"{d} = {d} * {weight}" for d in derivs + hess] if with_grad else []
    if spec.grad_factor != 1.0 and with_grad:
        lines += [f"{d} = {d} * const({d}, {spec.grad_factor!r})" for d in derivs + hess]
    return lines


class _Kernel:
    """Names shared by the source of one kernel: its arrays, parameters and gradients."""

    def __init__(
        self, spec: ElementwiseSpec, weighted: bool, kind: str, patterned: tuple[int, ...] = ()
    ):
        self.spec = spec
        self.weighted = weighted
        self.with_grad = "grad" in kind
        self.with_hess = kind.endswith("hess")
        self.inputs = [f"a{i}" for i in range(spec.arrays)]
        self.arrays = self.inputs + (["w"] if weighted else [])
        self.params = [f"p{i}" for i in range(len(spec.params))]
        self.flags = [f"FLAG_{f.upper()}" for f in spec.flags]
        self.grads = [f"g{j}" for j in range(len(spec.grads))] if self.with_grad else []
        self.hess = ["hs"] if self.with_hess else []
        # unweighted log-factor losses keep v and f apart: a product per segment
        self.product = spec.log_factor and not weighted
        # broadcast operands: their memory and pattern (arguments), gathered into buffers
        self.patterned = [self.arrays[j] for j in patterned]
        self.arguments = []
        for a in self.arrays:
            self.arguments += [a, f"{a}_pat"] if a in self.patterned else [a]
        self.plain = [a for a in self.arrays if a not in self.patterned]

    def read(self, a: str, index: str, view: str) -> str:
        """Element ``index`` of array ``a`` (``view`` prefixes the name: a slice or buffer)."""
        if a in self.patterned and not view:
            return f"element_at({a}, {a}_pat, {index})"
        return f"{view}{a}[{index}]"

    def gathers(self, lo: str, hi: str, buffer: str = "b_") -> list[str]:
        """Fill the buffer slices ``s_x`` of the broadcast operands with their elements
        ``[lo, hi)`` of the run."""
        lines = []
        for a in self.patterned:
            lines += [f"s_{a} = {buffer}{a}[:{hi} - {lo}]", f"gather({a}, {a}_pat, {lo}, s_{a})"]
        return lines

    def element(self, index: str, view: str = "", suffix: str = "") -> list[str]:
        """Point statements of element ``index`` of the arrays (``view`` prefixes their
        names), and the gradient stores."""
        point_args = [self.read(a, index, view) for a in self.inputs]
        point_args += self.params + self.flags
        weight = self.read("w", index, view) if self.weighted else None
        lines = point_statements(
            self.spec, point_args, self.with_grad, weight, combine=not self.product,
            suffix=suffix, with_hess=self.with_hess,
        )  # fmt: skip
        lines += [f"{view}{g}[{index}] = d{j}{suffix} * scale" for j, g in enumerate(self.grads)]
        lines += [f"{view}hs[{index}] = h{suffix} * scale" for _ in self.hess]
        return lines

    def lane_updates(self, lane: str, suffix: str = "") -> list[str]:
        lines = [f"sums = lanes_add_at(sums, {lane}, v{suffix})"]
        if self.product:
            lines.append(f"products = lanes_mul_at(products, {lane}, f{suffix}, FACTOR_SCALE)")
        return lines


def _indent(lines: list[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def _map_source(
    spec: ElementwiseSpec, kind: str, parallel: bool, weighted: bool, patterned: tuple = ()
) -> str:
    """``map_value`` / ``map_value_grad[_hess]``: the element losses (and the scaled gradient
    and second derivative). With broadcast operands each block goes in parts of ``GATHER``
    elements, the broadcast operands gathered into a buffer per part; the element loop is the
    same."""
    k = _Kernel(spec, weighted, kind, patterned)
    outputs = ["loss"] + (["scale"] + k.grads + k.hess if k.with_grad else [])
    name = f"{kind}_{'parallel' if parallel else 'serial'}"
    sliced = k.plain + ["loss"] + k.grads + k.hess
    lines = [
        f"@njit(parallel={parallel}, **KERNEL_OPTIONS)",
        f"def {name}({', '.join(k.arguments + k.params + outputs)}):",
        "    n = a0.size",
        "    nblocks = (n + BLOCK - 1) // BLOCK",
        f"    for b in {'prange' if parallel else 'range'}(nblocks):",
        "        lo = b * BLOCK",
        "        hi = min(lo + BLOCK, n)",
    ]
    body = point_statements(spec, [f"s_{a}[i]" for a in k.inputs] + k.params + k.flags,
                            k.with_grad, "s_w[i]" if weighted else None,
                            with_hess=k.with_hess)  # fmt: skip
    body += [f"s_{g}[i] = d{j} * scale" for j, g in enumerate(k.grads)]
    body += [f"s_{h}[i] = h * scale" for h in k.hess]
    body.append("s_loss[i] = v")
    if not k.patterned:
        # Slices, not a signed range(lo, hi) index: no wraparound code in the inner loop.
        lines += [f"        s_{a} = {a}[lo:hi]" for a in sliced]
        lines.append("        for i in range(hi - lo):")
        lines += _indent(body, 3)
        return "\n".join(lines) + "\n"
    lines += [f"        b_{a} = np.empty(min(hi - lo, GATHER), {a}.dtype)" for a in k.patterned]
    lines += [
        "        for c in range(lo, hi, GATHER):",
        "            e = min(c + GATHER, hi)",
    ]
    lines += [f"            s_{a} = {a}[c:e]" for a in sliced]
    lines += _indent(k.gathers("c", "e"), 3)
    lines.append("            for i in range(e - c):")
    lines += _indent(body, 4)
    return "\n".join(lines) + "\n"


def _stage_source(spec: ElementwiseSpec, kind: str, weighted: bool, patterned: tuple = ()) -> str:
    """``stage_value`` / ``stage_value_grad[_hess]`` (serial): each element's ``v`` (and
    ``f``) as the reduction adds them, for the elements of a run that precede its first
    segment."""
    k = _Kernel(spec, weighted, kind, patterned)
    outputs = (["scale"] + k.grads + k.hess if k.with_grad else []) + ["out_v", "out_f"]
    lines = [
        "@njit(parallel=False, **KERNEL_OPTIONS)",
        f"def {kind}({', '.join(k.arguments + k.params + outputs)}):",
        "    for i in range(a0.size):",
    ]
    body = k.element("i") + ["out_v[i] = v"] + (["out_f[i] = f"] if k.product else [])
    lines += _indent(body, 2)
    return "\n".join(lines) + "\n"


def _reduce_source(
    spec: ElementwiseSpec, kind: str, parallel: bool, weighted: bool, patterned: tuple = ()
) -> str:
    """``reduce_value`` / ``reduce_value_grad``: one run of elements into the reduction state.

    Arguments after the loss's own: ``start`` (the global position of element 0), ``state``
    (the lanes of the segment in progress at ``start``, updated to those at the end),
    ``levels, indices, values, depth`` (the stack of completed nodes). Returns the new depth
    and the sum of the run ``[0, start + n)`` (meaningful where ``start`` is 0). See
    :mod:`fastloss.kernels.reduction` for the contract.
    """
    k = _Kernel(spec, weighted, kind, patterned)
    outputs = ["scale"] + k.grads + k.hess if k.with_grad else []
    state = ["start", "state", "levels", "indices", "values", "depth"]
    name = f"{kind}_{'parallel' if parallel else 'serial'}"
    sliced = k.plain + k.grads + k.hess
    product = "True" if k.product else "False"
    reset = ["lanes_store(lanes_fill(0.0), state, 0)", "lanes_store(lanes_fill(1.0), state, LANES)"]
    lines = [
        f"@njit(parallel={parallel}, **KERNEL_OPTIONS)",
        f"def {name}({', '.join(k.arguments + k.params + outputs + state)}):",
        "    n = a0.size",
        "    position = start % SEGMENT",
        "    head = min(n, (SEGMENT - position) % SEGMENT)",
        "    if head:",
        "        sums = lanes_load(state, 0)",
        "        products = lanes_load(state, LANES)",
        "        for i in range(head):",
    ]
    lines += _indent(k.element("i") + k.lane_updates("(position + i) % LANES"), 3)
    lines += [
        "        lanes_store(sums, state, 0)",
        "        lanes_store(products, state, LANES)",
        "        if position + head == SEGMENT:",
        f"            closed = segment_value(state, SEGMENT, {product})",
        "            depth = push(levels, indices, values, depth, 0, start // SEGMENT, closed)",
        *_indent(reset, 3),
        "    body = n - head",
        "    full = body // SEGMENT",
        "    first = (start + head) // SEGMENT",
        "    task0 = first // TASK_SEGMENTS",
        "    tasks = (first + full + TASK_SEGMENTS - 1) // TASK_SEGMENTS - task0 if full else 0",
        "    task_levels = np.empty((tasks, TASK_STACK), np.int64)",
        "    task_indices = np.empty((tasks, TASK_STACK), np.int64)",
        "    task_values = np.empty((tasks, TASK_STACK), np.float64)",
        "    task_depths = np.empty(tasks, np.int64)",
        f"    for k in {'prange' if parallel else 'range'}(tasks):",
        "        s0 = max(first, (task0 + k) * TASK_SEGMENTS)",
        "        s1 = min(first + full, (task0 + k + 1) * TASK_SEGMENTS)",
    ]
    # The element loop stays in the input's precision (full vector width) and stores the
    # values of STAGE_SEGMENTS segments; the lane loop adds each segment's, a row of LANES at a
    # time. (Written out 16 elements to a row for LLVM's SLP vectoriser instead, the loss of a
    # segment needs no stage, but SLP leaves the selects of l1, huber or mape scalar: 5x slower.)
    lines.append("        stage = np.empty(STAGE, a0.dtype)")
    if k.product:
        lines.append("        stage_f = np.empty(STAGE, a0.dtype)")
    lines += [f"        b_{a} = np.empty(STAGE, {a}.dtype)" for a in k.patterned]
    lines += [
        "        d = 0",
        "        for s in range(s0, s1, STAGE_SEGMENTS):",
        "            group = min(STAGE_SEGMENTS, s1 - s)",
        "            lo = head + (s - first) * SEGMENT",
        "            hi = lo + group * SEGMENT",
    ]
    lines += [f"            s_{a} = {a}[lo:hi]" for a in sliced]
    lines += _indent(k.gathers("lo", "hi"), 3)
    lines.append("            for i in range(hi - lo):")
    body = k.element("i", "s_") + ["stage[i] = v"] + (["stage_f[i] = f"] if k.product else [])
    lines += _indent(body, 4)
    lines += [
        "            for c in range(group):",
        "                sums = lanes_fill(0.0)",
        "                products = lanes_fill(1.0)",
        "                for r in range(c * SEGMENT, (c + 1) * SEGMENT, LANES):",
        "                    sums = lanes_add_row(sums, stage, r)",
    ]
    if k.product:
        lines.append(
            "                    products = lanes_mul_row(products, stage_f, r, FACTOR_SCALE)"
        )
    lines += [
        f"                completed = close(sums, products, SEGMENT, {product})",
        "                d = push(task_levels[k], task_indices[k], task_values[k], d, 0, s + c,",
        "                         completed)",
        "        task_depths[k] = d",
        "    for k in range(tasks):",
        "        for j in range(task_depths[k]):",
        "            depth = push(levels, indices, values, depth, task_levels[k, j],",
        "                         task_indices[k, j], task_values[k, j])",
        "    rest = body - full * SEGMENT",
        "    if rest:",
        "        lo = head + full * SEGMENT",
        "        sums = lanes_fill(0.0)",
        "        products = lanes_fill(1.0)",
        "        for i in range(lo, n):",
    ]
    lines += _indent(k.element("i") + k.lane_updates("(i - lo) % LANES"), 3)
    lines += [
        "        lanes_store(sums, state, 0)",
        "        lanes_store(products, state, LANES)",
        f"    return depth, fold(levels, indices, values, depth, state, start + n, {product})",
    ]
    return "\n".join(lines) + "\n"


def module_source(
    spec: ElementwiseSpec,
    flags: tuple[bool, ...],
    weighted: bool,
    patterned: tuple[int, ...] = (),
) -> str:
    """Source of the generated module holding every kernel of ``spec`` for these options
    (``patterned``: the positions of the broadcast operands, see the module docstring)."""
    value_grad = spec.value_grad
    header = [
        f'"""Kernels of {spec.name} generated by fastloss.kernels.elementwise; do not edit."""',
        "",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        "from fastloss.kernels._jit import KERNEL_OPTIONS, LANES, SEGMENT, TASK_SEGMENTS",
        "from fastloss.kernels.reduction import (",
        "    FACTOR_SCALE, close, fold, lanes_add_at, lanes_add_row, lanes_fill, lanes_load,",
        "    lanes_mul_at, lanes_mul_row, lanes_store, push, segment_value,",
        ")",
        "from fastloss.kernels.scalar import const",
        "from fastloss.kernels.vector_width import full_width",
        "from fastloss.kernels.vmath import log",
        f"from {value_grad.__module__} import {value_grad.__name__} as value_grad",
        "",
        f"BLOCK = {BLOCK}",
        f"TASK_STACK = {TASK_STACK}",
        f"STAGE_SEGMENTS = {spec.stage_segments}",
        f"STAGE = {spec.stage_segments * SEGMENT}",
    ]
    for name, v in zip(spec.flags, flags, strict=True):
        header.append(f"FLAG_{name.upper()} = {bool(v)}")
    parts = ["\n".join(header) + "\n"]
    if patterned:
        parts[0] = parts[0].replace(
            "from fastloss.kernels._jit import KERNEL_OPTIONS,",
            "from fastloss.kernels._jit import KERNEL_OPTIONS, POINT_OPTIONS,",
        )
        parts[0] += f"GATHER = {GATHER}\n"
        parts.append(_PATTERN_HELPERS)
    hess = ("_hess",) if spec.hess else ()
    for kind in ("reduce_value", "reduce_value_grad", *(f"reduce_value_grad{h}" for h in hess)):
        for parallel in (False, True):
            parts.append(_reduce_source(spec, kind, parallel, weighted, patterned))
    for kind in ("map_value", "map_value_grad", *(f"map_value_grad{h}" for h in hess)):
        for parallel in (False, True):
            parts.append(_map_source(spec, kind, parallel, weighted, patterned))
    for kind in ("stage_value", "stage_value_grad", *(f"stage_value_grad{h}" for h in hess)):
        parts.append(_stage_source(spec, kind, weighted, patterned))
    return with_full_width("\n\n".join(parts))


# The helpers of the modules with broadcast operands (see the module docstring).
_PATTERN_HELPERS = """\
@njit(**POINT_OPTIONS)
def element_at(x, x_pat, i):
    g = i + x_pat[3]
    row = g // x_pat[2]
    return x[row * x_pat[0] + (g - row * x_pat[2]) * x_pat[1]]


@njit(**POINT_OPTIONS)
def gather(x, x_pat, lo, out):
    outer = x_pat[0]
    step = x_pat[1]
    inner = x_pat[2]
    g = lo + x_pat[3]
    row = g // inner
    col = g - row * inner
    count = out.size
    j = 0
    while j < count:
        m = min(count - j, inner - col)
        base = row * outer + col * step
        part = out[j:j + m]
        if step == 0:
            value = x[base]
            for t in range(m):
                part[t] = value
        elif step == 1:
            source = x[base:base + m]
            for t in range(m):
                part[t] = source[t]
        else:
            for t in range(m):
                part[t] = x[base + t * step]
        j += m
        row += 1
        col = 0
"""

_modules: dict[tuple, ModuleType] = {}
_lock = threading.RLock()


def memoised(key: tuple, build) -> ModuleType:
    """The module ``build()`` returns, built once per ``key`` for every factory (thread-safe;
    reentrant, as a build may load another module)."""
    module = _modules.get(key)
    if module is None:
        with _lock:
            module = _modules.get(key)
            if module is None:
                module = _modules[key] = build()
    return module


def check_flags(name: str, expected: tuple[str, ...], flags: tuple[bool, ...]) -> None:
    if len(flags) != len(expected):
        raise ValueError(f"{name}: expected flags {expected}, got {flags}")


def load_module(stem: str, source: str) -> ModuleType:
    """Write ``source`` as ``<cache directory>/<stem>.py`` (if it changed) and import it; where
    no directory is writable, execute it in memory (its kernels then compile uncached)."""
    _cache.install()
    mod_name = f"fastloss_generated.{stem.replace('-', '_')}"
    directory = _cache.directory()
    if directory is None:
        module = ModuleType(mod_name)
        module.__file__ = f"<fastloss generated {stem}>"
        sys.modules[mod_name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module
    path = directory / f"{stem}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: concurrent processes never see a partial file
    import_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(import_spec)
    sys.modules[mod_name] = module
    import_spec.loader.exec_module(module)
    return module


def kernels(
    spec: ElementwiseSpec,
    flags: tuple[bool, ...] = (),
    weighted: bool = False,
    patterned: tuple[int, ...] = (),
):
    """The generated module of ``spec`` for these flag values (memoised, thread-safe);
    ``patterned``: the positions (among the arrays, the weight last) of the operands passed as
    memory and pattern (broadcast views, see the module docstring).

    Its attributes ``reduce_value_serial``, ``reduce_value_parallel``, ... are Numba dispatchers
    that compile on first call and cache on disk.
    """
    patterned = tuple(patterned)

    def build():
        check_flags(spec.name, spec.flags, flags)
        if any(not 0 < j < spec.arrays + weighted for j in patterned):
            raise ValueError(f"{spec.name}: patterned operands {patterned} out of range")
        source = module_source(spec, flags, weighted, patterned)
        return load_module(module_stem(spec, flags, weighted, patterned), source)

    return memoised(("cpu", spec, flags, weighted, patterned), build)
