"""The CUDA target of the row-kernel factory: one :class:`~fastloss.kernels.rows.RowSpec`, its
GPU kernels.

From the same declaration as the CPU factory (:mod:`fastloss.kernels.rows`: the same ``@njit``
sweep, row, gradient and skip functions, compiled a second time for the device by
:func:`~fastloss.kernels.cuda.elementwise.device_function`, without fast math) this module
writes one real ``.py`` module per (spec, flags, launch shape) into the versioned directory of
the generated modules (file names ``cuda_rows_<spec>[_flags]-<hash>_t<T>_w<G>_s<S>.py``: the
launch shape below) and imports it, so ``@cuda.jit(cache=...)`` works. A generated module holds

``value_rows(a0, ..., r0, ..., w0, ..., *params, out0, ...)``
    the float64 per-row outputs (the loss first) into ``out0, ...``;
``value_grad_rows(a0, ..., r0, ..., w0, ..., *params, *scales, g0, ..., out0, ...)``
    the same, and the gradient of each input of ``spec.grads`` into ``g<j>``, scaled as the
    row function scales its coefficients by the ``scales``;
``value_rows_warp``, ``value_grad_rows_warp``
    the same kernels with ``GROUP`` threads per row (see below),

with the arguments in the CPU kernels' order (:func:`~fastloss.kernels.rows.signature`): the
``(rows, D)`` input matrices (C-contiguous, one floating dtype), the ``(rows,)`` per-row arrays
(int64 class indices, float64 labels), the ``(D,)`` column arrays (class weights), the runtime
parameters (int64 or float64), the float64 scales; compile-time flags are module constants
``FLAG_<NAME>``. The point functions take the arguments the CPU's take (the column index, the
row's scalars, the earlier totals; the row function the row's views, the column arrays and the
scales), so a declaration is the whole loss on both targets.

Scheme
------
A row of more than :data:`SHORT_ROW` columns takes a block (``value_rows``: block ``i``, row
``i``, :data:`THREADS_PER_BLOCK` threads); a shorter row takes ``GROUP`` threads
(:data:`WARP_THREADS`, a warp: ``value_rows_warp``, ``THREADS // GROUP`` rows per block), where
a block's threads would mostly idle and its barriers cost more than its row. The row length
alone decides (:func:`grid`), never the number of rows. Thread ``t`` of a row's ``G`` threads
owns the columns ``t, t + G, t + 2G, ...`` (adjacent threads read adjacent columns: coalesced),
in every sweep, so a row of any length runs with the fixed group size.

1. Each sweep in order: thread ``t`` calls the sweep's point function on each of its columns,
   in column order, and adds each of its values (rounded to the input's precision, as the CPU
   kernels stage them) into a float64 accumulator (``"sum"``) or keeps the largest, NaN
   winning (``"max"``); the per-thread results go to a float64 shared array per value and
   combine in a fixed tree over the row's ``G`` entries (unrolled: ``s[t] (+)= s[t + h]`` for
   ``t < h``, ``h = G / 2, ..., 1``, a barrier after each level: ``syncthreads`` for a block,
   ``syncwarp`` over the row's lanes for a warp). Every thread of the row reads the totals:
   a later sweep's point function takes them.
2. A skipped row (``spec.skip``) writes 0 outputs and a zero gradient row, and its threads
   return before any sweep (the predicate reads the row's scalars only: the row's threads
   agree, and a warp's barriers involve its row's lanes alone).
3. Thread 0 of the row calls the row function on the totals, the row's scalars, views and
   column arrays, the scales and the parameters, writes the row's float64 outputs and (with the
   gradient) the float64 coefficients to shared memory.
4. After a barrier, every thread of the row casts the coefficients to the input's precision
   (as the CPU kernels do) and runs the gradient sweep over its columns; with ``staged`` it
   calls the last sweep's point function again for the values the CPU staged (the GPU keeps no
   scratch row).

In-place gradients: thread ``t`` reads only its own columns in every sweep, the gradient
sweep reads a column of every input before it writes that column of every gradient, and the
row function (which may read any column of the row's views, the target's logit) runs before
the barrier that precedes the gradient sweep, so a gradient may be written exactly over an
input (as on the CPU).

Determinism: every addition happens in an order fixed by the column index and the row's group
size (``THREADS_PER_BLOCK``, or ``WARP_THREADS`` for a row of at most ``SHORT_ROW`` columns:
a function of the data's shape; all three are baked into the generated source and its file
name), never by the grid size or the scheduling of blocks and warps; no floating-point atomics.
The same input gives the same bits run after run. The column values are the CPU kernels' (the
same point functions in the input's precision; on a GPU up to libdevice's ``exp``/``log``/
``pow`` against the host's polynomials), but the sums are not ordered by the CPU's row
contract: GPU bits follow the per-thread strides and the tree above, not the CPU's ``LANES``
lanes and halving tree. A row's sums agree with the CPU's to float64 rounding, so the results
agree to a few ulps of their largest values, not bit for bit. Measured under the simulator
(which runs the point functions as the CPU compiled them), rows of 37 columns in three launch
shapes (a block of 4 threads per row; 2 threads per row; the defaults, 32 threads per row):
float32 results, rounded from float64 sums on both, bit-identical for every loss of the pairwise
and softmax families; float64 up to 4 ulps of the largest loss and 2 of the largest gradient
element, an element formed by cancellation (``margin + d(a, p) - d(a, n)`` near 0, ``p_c -
[c = t]``) differing by more ulps of its own. Nothing was measured on a GPU.

Launch shape
------------
:data:`THREADS_PER_BLOCK` (a power of two, at most 1024), :data:`WARP_THREADS` (a power of two,
at most 32, clamped to the block size; where it equals the block size there are no ``_warp``
kernels) and :data:`SHORT_ROW` are read when a module is generated; tests shrink them (4, 2 and
a few columns under the simulator, where each CUDA thread is a Python thread) so that rows of a
few columns take several strides per thread, rows of 1 or 3 columns leave threads idle and both
kinds of kernel run. The defaults (a warp for rows of up to 1024 columns, 32 strides) are a
choice, not a measurement.
"""

from __future__ import annotations

from types import ModuleType

from fastloss.kernels.elementwise import check_flags, load_module, memoised
from fastloss.kernels.rows import RowSpec, module_stem, point_arguments, signature

# Threads per block of the row kernels: a power of two (the trees halve it), at most 1024.
THREADS_PER_BLOCK = 256
# Threads per short row: a power of two, at most 32 (a warp; the block size where it is smaller).
WARP_THREADS = 32
# The longest row (in columns) that a warp takes; a longer row takes a block.
SHORT_ROW = 1024


def launch_shape() -> tuple[int, int, int]:
    """The current ``(threads per block, threads per short row, longest short row)``,
    validated (:data:`THREADS_PER_BLOCK`, :data:`WARP_THREADS` clamped to the block size,
    :data:`SHORT_ROW`)."""
    threads, warp, short = int(THREADS_PER_BLOCK), int(WARP_THREADS), int(SHORT_ROW)
    if threads < 1 or threads > 1024 or threads & (threads - 1):
        raise ValueError(f"THREADS_PER_BLOCK: expected a power of two <= 1024, got {threads}")
    if warp < 1 or warp > 32 or warp & (warp - 1):
        raise ValueError(f"WARP_THREADS: expected a power of two <= 32, got {warp}")
    if short < 0:
        raise ValueError(f"SHORT_ROW: expected a number of columns >= 0, got {short}")
    return threads, min(warp, threads), short


# --- source generation ---------------------------------------------------------------------------


def _tree(sums: list[str], maxes: list[str], group: int, base: str, barrier: str) -> list[str]:
    """The unrolled fixed-shape tree over a row's ``group`` entries (from ``base``) of the
    shared arrays ``sums`` (added) and ``maxes`` (the largest kept, NaN wins); afterwards the
    first entry of each holds the row's total, visible to every thread of the row."""
    lines = [barrier]
    half = group // 2
    while half >= 1:
        lines.append(f"if tid < {half}:")
        lines += [f"    {s}[{base}tid] += {s}[{base}tid + {half}]" for s in sums]
        for m in maxes:
            lines += [
                f"    other = {m}[{base}tid + {half}]",
                f"    if other > {m}[{base}tid] or other != other:",
                f"        {m}[{base}tid] = other",
            ]
        lines.append(barrier)
        half //= 2
    return lines


def _kernel_source(
    spec: RowSpec, with_grad: bool, threads: int, group: int, simulator: bool
) -> str:
    """A block per row (``group == threads``: ``value_rows``, ``value_grad_rows``) or
    ``group`` threads per row, ``threads // group`` rows per block (``..._warp``)."""
    warp = group < threads
    kind = ("value_grad_rows" if with_grad else "value_rows") + ("_warp" if warp else "")
    args = point_arguments(spec, "c", "i")
    if simulator:  # the row function is the CPU's there: it takes NumPy arrays
        args["views"] = [f"host({v})" for v in args["views"]]
        args["columns"] = [f"host({v})" for v in args["columns"]]
    tail = args["tail"]
    grads = [f"g{j}" for j in range(len(spec.grads))]
    shared = [f"acc{s}_{j}" for s, sweep in enumerate(spec.sweeps) for j in range(sweep.count)]
    body = [f"{a} = cuda.shared.array(THREADS, float64)" for a in shared]
    coefficients = max(spec.coefficients, 1)
    if warp:
        # the simulator has no syncwarp; its syncthreads waits for the live threads only
        barrier = "cuda.syncthreads()" if simulator else "cuda.syncwarp(mask)"
        base, first, slot = "base + ", "base", f"g * {coefficients} + "
        if with_grad:
            body.append(f"coefs = cuda.shared.array({coefficients * threads // group}, float64)")
        body += [
            "g = cuda.threadIdx.x // GROUP",
            "tid = cuda.threadIdx.x - g * GROUP",
            "base = g * GROUP",
            "i = cuda.blockIdx.x * (THREADS // GROUP) + g",
            "if i >= a0.shape[0]:",  # every thread of the row returns
            "    return",
            "mask = GROUP_MASK << (cuda.threadIdx.x % 32 - tid)",
        ]
    else:
        barrier = "cuda.syncthreads()"
        base, first, slot = "", "0", ""
        if with_grad:
            body.append(f"coefs = cuda.shared.array({coefficients}, float64)")
        body += ["i = cuda.blockIdx.x", "tid = cuda.threadIdx.x"]
    stride = "GROUP" if warp else "THREADS"
    body.append("columns = a0.shape[1]")
    body += args["row_scalars"]
    row_scalars = [f"ri{j}" for j in range(spec.row_inputs)]
    if spec.skip is not None:
        # the same for every thread of the row: they all return
        body.append(f"if skip({', '.join(row_scalars + tail)}):")
        body.append("    if tid == 0:")
        body += [f"        out{j}[i] = 0.0" for j in range(spec.outputs)]
        if with_grad:
            body.append(f"    for c in range(tid, columns, {stride}):")
            body += [f"        {g}[i, c] = {g}.dtype.type(0)" for g in grads]
        body.append("    return")
    results: list[str] = []
    calls: list[str] = []
    for s, sweep in enumerate(spec.sweeps):
        values = [f"v{s}_{j}" for j in range(sweep.count)]
        partials = [f"u{s}_{j}" for j in range(sweep.count)]
        accs = [f"acc{s}_{j}" for j in range(sweep.count)]
        start = "float64(0.0)" if sweep.op == "sum" else "float64(-math.inf)"
        body += [f"{u} = {start}" for u in partials]
        call = f"sweep{s}({', '.join(args['values'] + results + tail)})"
        calls.append(call)
        body.append(f"for c in range(tid, columns, {stride}):")
        body.append(f"    {', '.join(values)} = {call}")
        for v, u in zip(values, partials, strict=True):
            if sweep.op == "sum":
                body.append(f"    {u} += float64(a0.dtype.type({v}))")
            else:
                body += [
                    f"    w = float64(a0.dtype.type({v}))",
                    f"    if w > {u} or w != w:",
                    f"        {u} = w",
                ]
        body += [f"{a}[{base}tid] = {u}" for a, u in zip(accs, partials, strict=True)]
        is_sum = sweep.op == "sum"
        body += _tree(accs if is_sum else [], [] if is_sum else accs, group, base, barrier)
        totals = [f"t{s}_{j}" for j in range(sweep.count)]
        body += [f"{t} = {a}[{first}]" for t, a in zip(totals, accs, strict=True)]
        body += [f"{t} = 0.0" for t in totals[sweep.sums :]]  # staged only (see Sweep)
        results += totals
    scales = [f"s_{s}" for s in spec.scales] if with_grad else ["0.0"] * len(spec.scales)
    row_args = results + row_scalars + args["views"] + args["columns"] + scales + tail
    outs = [f"o{j}" for j in range(spec.outputs)]
    body.append("if tid == 0:")
    body.append(f"    {', '.join(outs)}, coef = row_value({', '.join(row_args)})")
    body += [f"    out{j}[i] = {o}" for j, o in enumerate(outs)]
    if with_grad:
        body += [f"    coefs[{slot}{j}] = coef[{j}]" for j in range(spec.coefficients)]
        body.append(barrier)
        coefs = [f"k{j}" for j in range(spec.coefficients)]
        body += [f"k{j} = a0.dtype.type(coefs[{slot}{j}])" for j in range(spec.coefficients)]
        body.append(f"for c in range(tid, columns, {stride}):")
        staged: list[str] = []
        if spec.staged:  # the last sweep's values again, rounded as the CPU stages them
            last = spec.sweeps[-1]
            staged = [f"st{j}" for j in range(last.count)]
            body.append(f"    {', '.join(staged)} = {calls[-1]}")
            staged = [f"a0.dtype.type({v})" for v in staged]
        call = f"grad({', '.join(args['values'] + staged + coefs + tail)})"
        body.append(f"    {', '.join(f'{g}[i, c]' for g in grads)} = {call}")
    lines = [
        "@cuda.jit(cache=CACHE)",
        f"def {kind}({', '.join(signature(spec, with_grad))}):",
    ]
    lines += ["    " + line for line in body]
    return "\n".join(lines) + "\n"


def host(array):
    """Under the CUDA simulator, the NumPy array behind a kernel's array argument or view."""
    array = getattr(array, "_item", array)
    return getattr(array, "_ary", array)


def module_source(
    spec: RowSpec,
    flags: tuple[bool, ...],
    shape: tuple[int, int, int],
    simulator: bool,
) -> str:
    """Source of the generated CUDA module of ``spec`` for these flag values and launch shape
    (:func:`launch_shape`)."""
    threads, group, short = shape
    functions = [(f"sweep{s}", sweep.point) for s, sweep in enumerate(spec.sweeps)]
    functions += [("row_value", spec.row), ("grad", spec.grad)]
    if spec.skip is not None:
        functions.append(("skip", spec.skip))
    header = [
        f'"""CUDA row kernels of {spec.name} generated by fastloss.kernels.cuda.rows; do not '
        'edit."""',
        "",
        "import math",
        "",
        "from numba import cuda, float64",
        "",
        "from fastloss.kernels._cache import enabled",
        "from fastloss.kernels.cuda.elementwise import device_function",
        "from fastloss.kernels.cuda.rows import host",
    ]
    header += [f"from {f.__module__} import {f.__name__} as _{alias}" for alias, f in functions]
    header.append("")
    header += [f"{alias} = device_function(_{alias})" for alias, _ in functions]
    header += ["", "CACHE = enabled()", f"THREADS = {threads}", f"GROUP = {group}"]
    header += [f"GROUP_MASK = {(1 << group) - 1:#x}", f"SHORT_ROW = {short}"]
    for name, value in zip(spec.flags, flags, strict=True):
        header.append(f"FLAG_{name.upper()} = {bool(value)}")
    parts = ["\n".join(header) + "\n"]
    for group_size in (threads, group) if group < threads else (threads,):
        for with_grad in (False, True):
            parts.append(_kernel_source(spec, with_grad, threads, group_size, simulator))
    return "\n\n".join(parts)


# --- generated modules ---------------------------------------------------------------------------


def kernels(spec: RowSpec, flags: tuple[bool, ...] = ()) -> ModuleType:
    """The generated CUDA module of ``spec`` for these flag values at the current launch shape
    (memoised, thread-safe). Its ``value_rows`` and ``value_grad_rows`` (a block per row, of
    ``THREADS`` threads) and ``value_rows_warp`` and ``value_grad_rows_warp`` (``GROUP``
    threads per row, ``THREADS // GROUP`` rows per block) compile on first launch and cache on
    disk; :func:`grid` says which to launch and how."""
    from numba.core import config

    shape = launch_shape()
    simulator = bool(config.ENABLE_CUDASIM)

    def build():
        check_flags(spec.name, spec.flags, flags)
        threads, group, short = shape
        stem = f"cuda_{module_stem(spec, flags)}_t{threads}_w{group}_s{short}"
        stem += "_sim" if simulator else ""
        return load_module(stem, module_source(spec, flags, shape, simulator))

    return memoised(("cuda_rows", spec, flags, shape, simulator), build)


def grid(module: ModuleType, rows: int, columns: int) -> tuple[str, int, int]:
    """``(kernel suffix, blocks, threads per block)`` of a launch over ``rows`` rows of
    ``columns`` columns: a warp per row (``"_warp"``) for rows of at most ``SHORT_ROW``
    columns, a block per row for longer ones. The row length alone decides, so a row's bits
    are a function of the data."""
    if columns <= module.SHORT_ROW and module.GROUP < module.THREADS:
        per_block = module.THREADS // module.GROUP
        return "_warp", -(-rows // per_block), module.THREADS
    return "", rows, module.THREADS
