"""The CUDA target of the row-kernel factory: one :class:`~fastloss.kernels.rows.RowSpec`, its
GPU kernels.

From the same declaration as the CPU factory (:mod:`fastloss.kernels.rows`: the same ``@njit``
sweep, row and gradient point functions, compiled a second time for the device by
:func:`~fastloss.kernels.cuda.elementwise.device_function`, without fast math) this module
writes one real ``.py`` module per (spec, flags, block size) into the versioned directory of
the generated modules (file names ``cuda_rows_<spec>[_flags]-<hash>_t<threads>.py``) and
imports it, so ``@cuda.jit(cache=...)`` works. A generated module holds

``value_rows(a0, ..., r0, ..., *params, row_loss)``
    the float64 loss of every row into ``row_loss``;
``value_grad_rows(a0, ..., r0, ..., *params, scale, g0, ..., row_loss)``
    the same, and the gradient of ``scale`` times each row's loss into ``g<j>`` (one per entry
    of ``spec.grads``),

with the arguments in the CPU kernels' order: the ``(rows, D)`` input matrices (C-contiguous,
one floating dtype), the ``(rows,)`` float64 per-row arrays, the float64 runtime parameters;
compile-time flags are module constants ``FLAG_<NAME>``.

Scheme
------
Block ``i`` takes row ``i``; thread ``t`` of its :data:`THREADS_PER_BLOCK` owns the columns
``t, t + THREADS, t + 2 THREADS, ...`` (adjacent threads read adjacent columns: coalesced), in
every sweep, so a row of any length runs with the fixed block size.

1. Each sweep in order: thread ``t`` calls the sweep's point function on each of its columns,
   in column order, and adds each of its values (rounded to the input's precision, as the CPU
   kernels stage them) into a float64 accumulator (``"sum"``) or keeps the largest, NaN
   winning (``"max"``); the per-thread results go to a float64 shared array
   per value and combine in a fixed tree (unrolled: ``s[t] (+)= s[t + h]`` for ``t < h``,
   ``h = THREADS / 2, ..., 1``, a barrier after each level). Every thread reads the row's
   totals from entry 0: a later sweep's point function takes them.
2. Thread 0 calls the row function on the totals, the row's scalars and the parameters, writes
   the row's float64 loss and (with the gradient) the float64 coefficients to shared memory.
3. After a barrier, every thread scales the coefficients by ``scale`` (in float64, then cast to
   the input's precision, as the CPU kernels do) and runs the gradient sweep over its columns.

In-place gradients: thread ``t`` reads only its own columns, in every sweep, and the gradient
sweep reads a column of every input before it writes that column of every gradient, so a
gradient may be written exactly over an input (as on the CPU).

Determinism: every addition happens in an order fixed by the column index and
:data:`THREADS_PER_BLOCK` (baked into the generated source and its file name), never by the grid
size or the scheduling of blocks and warps; no floating-point atomics. The same input gives the
same bits run after run. The column values are the CPU kernels' (the same point functions in
the input's precision, up to libdevice's ``pow`` against the host's), but the sums are not
ordered by the CPU's row contract: GPU bits follow the grid-independent per-thread strides and
the tree above, not the CPU's ``LANES`` lanes and halving tree. A row's sums agree with the
CPU's to float64 rounding, so the losses and gradients agree to a few ulps of their largest
values, not bit for bit (measured under the simulator, rows of 37 columns: float32 results,
rounded from float64, bit-identical; float64 up to 8 ulps of the largest loss and 3 of the
largest gradient element, an element formed by cancellation, ``margin + d(a, p) - d(a, n)``
near 0, differing by more ulps of its own).

Block size
----------
:data:`THREADS_PER_BLOCK` (a power of two, at most 1024) is read when a module is generated;
tests shrink it (4 under the simulator, where each CUDA thread is a Python thread) so that rows
of a few columns take several strides per thread and rows of 1 or 3 columns leave threads idle.
"""

from __future__ import annotations

from types import ModuleType

from fastloss.kernels.elementwise import check_flags, load_module, memoised
from fastloss.kernels.rows import RowSpec, module_stem, point_arguments, signature

# Threads per block of the row kernels: a power of two (the trees halve it), at most 1024.
THREADS_PER_BLOCK = 256


def threads_per_block() -> int:
    """The current :data:`THREADS_PER_BLOCK`, validated."""
    threads = int(THREADS_PER_BLOCK)
    if threads < 1 or threads > 1024 or threads & (threads - 1):
        raise ValueError(f"THREADS_PER_BLOCK: expected a power of two <= 1024, got {threads}")
    return threads


# --- source generation ---------------------------------------------------------------------------


def _tree(sums: list[str], maxes: list[str], threads: int) -> list[str]:
    """The unrolled fixed-shape tree over the shared arrays ``sums`` (added) and ``maxes`` (the
    largest kept, NaN wins); afterwards entry 0 of each holds the row's total, visible to every
    thread."""
    lines = ["cuda.syncthreads()"]
    half = threads // 2
    while half >= 1:
        lines.append(f"if tid < {half}:")
        lines += [f"    {s}[tid] += {s}[tid + {half}]" for s in sums]
        for m in maxes:
            lines += [
                f"    other = {m}[tid + {half}]",
                f"    if other > {m}[tid] or other != other:",
                f"        {m}[tid] = other",
            ]
        lines.append("cuda.syncthreads()")
        half //= 2
    return lines


def _kernel_source(spec: RowSpec, with_grad: bool, threads: int, simulator: bool) -> str:
    kind = "value_grad_rows" if with_grad else "value_rows"
    args = point_arguments(spec, "c", "i")
    if simulator:  # the row function is the CPU's there: it takes NumPy arrays
        args["views"] = [f"host({v})" for v in args["views"]]
        args["columns"] = [f"host({v})" for v in args["columns"]]
    tail = args["tail"]
    grads = [f"g{j}" for j in range(len(spec.grads))]
    shared = [f"acc{s}_{j}" for s, sweep in enumerate(spec.sweeps) for j in range(sweep.count)]
    body = [f"{a} = cuda.shared.array(THREADS, float64)" for a in shared]
    if with_grad:
        body.append(f"coefs = cuda.shared.array({max(spec.coefficients, 1)}, float64)")
    body += ["i = cuda.blockIdx.x", "tid = cuda.threadIdx.x", "columns = a0.shape[1]"]
    body += args["row_scalars"]
    row_scalars = [f"ri{j}" for j in range(spec.row_inputs)]
    if spec.skip is not None:
        # the same for every thread of the block: the whole block returns
        body.append(f"if skip({', '.join(row_scalars + tail)}):")
        body.append("    if tid == 0:")
        body += [f"        out{j}[i] = 0.0" for j in range(spec.outputs)]
        if with_grad:
            body.append("    for c in range(tid, columns, THREADS):")
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
        body.append("for c in range(tid, columns, THREADS):")
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
        body += [f"{a}[tid] = {u}" for a, u in zip(accs, partials, strict=True)]
        is_sum = sweep.op == "sum"
        body += _tree(accs if is_sum else [], [] if is_sum else accs, threads)
        totals = [f"t{s}_{j}" for j in range(sweep.count)]
        body += [f"{t} = {a}[0]" for t, a in zip(totals, accs, strict=True)]
        results += totals
    scales = [f"s_{s}" for s in spec.scales] if with_grad else ["0.0"] * len(spec.scales)
    row_args = results + row_scalars + args["views"] + args["columns"] + scales + tail
    outs = [f"o{j}" for j in range(spec.outputs)]
    body.append("if tid == 0:")
    body.append(f"    {', '.join(outs)}, coef = row_value({', '.join(row_args)})")
    body += [f"    out{j}[i] = {o}" for j, o in enumerate(outs)]
    if with_grad:
        body += [f"    coefs[{j}] = coef[{j}]" for j in range(spec.coefficients)]
        body.append("cuda.syncthreads()")
        coefs = [f"k{j}" for j in range(spec.coefficients)]
        body += [f"k{j} = a0.dtype.type(coefs[{j}])" for j in range(spec.coefficients)]
        body.append("for c in range(tid, columns, THREADS):")
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


def module_source(spec: RowSpec, flags: tuple[bool, ...], threads: int, simulator: bool) -> str:
    """Source of the generated CUDA module of ``spec`` for these flag values and block size."""
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
    header += ["", "CACHE = enabled()", f"THREADS = {threads}"]
    for name, value in zip(spec.flags, flags, strict=True):
        header.append(f"FLAG_{name.upper()} = {bool(value)}")
    parts = ["\n".join(header) + "\n"]
    parts += [_kernel_source(spec, with_grad, threads, simulator) for with_grad in (False, True)]
    return "\n\n".join(parts)


# --- generated modules ---------------------------------------------------------------------------


def kernels(spec: RowSpec, flags: tuple[bool, ...] = ()) -> ModuleType:
    """The generated CUDA module of ``spec`` for these flag values at the current block size
    (memoised, thread-safe). Its ``value_rows`` and ``value_grad_rows`` compile on first launch
    and cache on disk; its ``THREADS`` is the block size to launch them with."""
    from numba.core import config

    threads = threads_per_block()
    simulator = bool(config.ENABLE_CUDASIM)

    def build():
        check_flags(spec.name, spec.flags, flags)
        stem = f"cuda_{module_stem(spec, flags)}_t{threads}{'_sim' if simulator else ''}"
        return load_module(stem, module_source(spec, flags, threads, simulator))

    return memoised(("cuda_rows", spec, flags, threads, simulator), build)
