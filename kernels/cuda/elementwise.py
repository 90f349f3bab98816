"""The CUDA twin of :mod:`fastloss.kernels.elementwise`: one declaration, every GPU kernel.

From the same :class:`~fastloss.kernels.elementwise.ElementwiseSpec` as the CPU factory (the
same ``@njit`` point functions, compiled a second time by the CUDA target, where
:mod:`fastloss.kernels.cuda.vmath` maps ``exp``/``log``/``log1p`` to libdevice) this module
writes one real ``.py`` module per (spec, flags, weighted, launch shape) into the same versioned
:func:`~fastloss.kernels.elementwise.generated_dir` as the CPU factory (file names start with
``cuda_`` and carry the launch shape), and imports it, so ``@cuda.jit(cache=...)`` works. A
generated module holds:

``reduce_value``         forward only: writes the block partials of the loss sum
``reduce_value_grad``    fused forward+backward: writes ``grad = scale * dloss/dx`` once per
                         element and the block partials
``reduce_value_grad_by`` the same with ``scale`` read from a device array (weighted modules
                         only: the mean by the sum of the weights, known only on the device)
``map_value``            writes the element losses (``reduction="none"``)
``map_value_grad``       writes the element losses and the scaled gradient

with, in ``weighted`` modules, every element's loss and gradient multiplied by ``w[i]``.
:func:`common` gives the shared kernels of a launch shape: ``finalize`` (sum the partials,
divide by the denominator, write a 0-d result), ``finalize_by`` (denominator on the device),
``block_sum`` and ``finalize_weights`` (the weight sum of the weighted mean), ``fill``,
``copy_<src_ndim>_<ndim>`` (broadcast, cast and strided copies on the device) and
``unbroadcast`` (sum a gradient over broadcast dimensions, in a fixed order).

Reduction scheme
----------------
Block ``b`` of a launch owns the elements ``[b * CHUNK, (b + 1) * CHUNK)`` with
``CHUNK = THREADS * ITEMS`` (:data:`THREADS_PER_BLOCK` x :data:`ITEMS_PER_THREAD`); thread
``t`` of the block handles the elements ``b * CHUNK + t + k * THREADS`` for ``k`` in
``range(ITEMS)`` (adjacent threads read adjacent elements: coalesced loads and stores), adds
their losses in that order into a float64 accumulator (also for float32 input), and stores it
in a float64 shared array. The block then adds the shared array as a binary tree with a fixed
shape (unrolled: ``s[t] += s[t + h]`` for ``t < h``, ``h = THREADS / 2, ..., 2``, a
``syncthreads`` after each level) and thread 0 writes ``partials[b] = s[0] + s[1]``. A second
kernel of one block (``finalize``) lets thread ``t`` add ``partials[t], partials[t + THREADS],
...`` in index order, reduces those with the same fixed tree, divides by the denominator (1 for
a sum) and writes the 0-d result. The result never leaves the device: no host synchronisation,
and the launches go on the caller's stream in order, so the second kernel sees the first one's
partials without an event.

Determinism: every addition above happens in an order fixed by the element index and by the
two compile-time constants ``THREADS`` and ``ITEMS``, never by the grid size, the scheduling of
blocks or warps, or the device; no floating-point atomics are used. The same input gives the
same bits run after run and on any device (modulo the libdevice and FMA-contraction choices of
the compiler for that architecture, which are fixed per compiled binary). The GPU sums in a
different order from the CPU kernels (whose blocks hold 65536 elements summed serially), so
GPU and CPU results agree to rounding, not bit for bit.

Launch shape
------------
:data:`THREADS_PER_BLOCK` (a power of two) and :data:`ITEMS_PER_THREAD` are module-level
settings read when a module is generated; both are baked into the generated source (the shared
array size and the unrolled tree need constants) and into its file name, so changing them
gives new modules and never a stale cache entry. Tests shrink them (e.g. 8 x 4) so that inputs
of a few dozen elements span several blocks under the CUDA simulator, where every simulated
thread is a Python thread.

Compilation
-----------
A ``@cuda.jit`` kernel calling a CPU ``@njit`` dispatcher makes numba-cuda compile the
dispatcher's Python function for the device with the *CPU* target options. Those hold
``fastmath`` (a set of LLVM flags), which numba-cuda reads as plain "fast math on": float32
division becomes the approximate ``__nv_fast_fdividef`` (seen in the Poisson, log-cosh and MSLE
point functions) and a ``math.exp``/``math.log`` written in a point function would become
``__nv_fast_expf``/``__nv_fast_logf``. :func:`device_function` therefore registers, before any
compilation, a device twin compiled without fast math for each point function and every
jitted function it calls (numba-cuda keeps this twin on the CPU dispatcher and reuses it for
every later call from device code). ``tests/cuda_compile_cases.py`` checks that no
``__nv_fast_*`` function is left in any kernel.
"""

from __future__ import annotations

from fastloss.kernels.elementwise import (
    ElementwiseSpec,
    check_flags,
    load_module,
    memoised,
    module_stem,
    point_statements,
)

# Threads per block of every generated kernel: a power of two (the tree reduction halves it).
THREADS_PER_BLOCK = 256
# Elements per thread of the elementwise passes: a block owns THREADS * ITEMS elements.
ITEMS_PER_THREAD = 8
# Highest rank that the ``copy`` kernels (broadcast, cast, strided copies on the device) handle.
MAX_COPY_NDIM = 8

KINDS = ("reduce_value", "reduce_value_grad", "map_value", "map_value_grad")

# Where numba-cuda keeps the device twin of a CPU dispatcher: ``val.__dispatcher`` in
# ``CUDATypingContext.resolve_value_type`` (numba_cuda/numba/cuda/target.py), name-mangled.
_TWIN_ATTRIBUTE = "_CUDATypingContext__dispatcher"


def launch_shape() -> tuple[int, int]:
    """The current ``(threads per block, items per thread)``, validated."""
    threads, items = int(THREADS_PER_BLOCK), int(ITEMS_PER_THREAD)
    if threads < 1 or threads > 1024 or threads & (threads - 1):
        raise ValueError(f"THREADS_PER_BLOCK: expected a power of two <= 1024, got {threads}")
    if items < 1:
        raise ValueError(f"ITEMS_PER_THREAD: expected a positive integer, got {items}")
    return threads, items


# --- device twins of the point functions --------------------------------------------------------


def device_function(func):
    """Prepare the CPU dispatcher ``func`` for calls from CUDA kernels; return ``func``.

    Registers a device twin compiled without fast math for ``func`` and for every jitted
    function it references as a global, recursively (see the module docstring). Under the
    CUDA simulator, where kernels are plain Python calling the CPU-compiled functions, nothing
    is needed.
    """
    from numba.core import config

    if config.ENABLE_CUDASIM:
        return func
    from numba.core.dispatcher import Dispatcher
    from numba.cuda.dispatcher import CUDADispatcher

    import fastloss.kernels.cuda.vmath  # noqa: F401  (the libdevice overloads of exp/log/log1p)

    seen: set[int] = set()
    pending = [func]
    while pending:
        disp = pending.pop()
        if id(disp) in seen:
            continue
        seen.add(id(disp))
        if not isinstance(disp, Dispatcher) or isinstance(disp, CUDADispatcher):
            continue
        if getattr(disp, _TWIN_ATTRIBUTE, None) is None:
            options = {"device": True, "debug": False, "opt": True, "fastmath": False}
            setattr(disp, _TWIN_ATTRIBUTE, CUDADispatcher(disp.py_func, options))
        code = disp.py_func.__code__
        scope = disp.py_func.__globals__
        pending.extend(scope[name] for name in code.co_names if name in scope)
    return func


# --- source generation ---------------------------------------------------------------------------


def _tree(indent: str, threads: int, *statements: str) -> list[str]:
    """Unrolled fixed-order tree sum of the shared array ``acc``: after it, thread 0 runs
    ``statements`` with the block total in ``total``."""
    lines = [f"{indent}cuda.syncthreads()"]
    half = threads // 2
    while half >= 2:
        lines += [f"{indent}if t < {half}:", f"{indent}    acc[t] += acc[t + {half}]"]
        lines.append(f"{indent}cuda.syncthreads()")
        half //= 2
    total = "acc[0] + acc[1]" if threads > 1 else "acc[0]"
    lines += [f"{indent}if t == 0:", f"{indent}    total = {total}"]
    lines += [f"{indent}    {statement}" for statement in statements]
    return lines


def _kernel_source(spec: ElementwiseSpec, kind: str, weighted: bool, threads: int) -> str:
    arrays = [f"a{i}" for i in range(spec.arrays)] + (["w"] if weighted else [])
    params = [f"p{i}" for i in range(len(spec.params))]
    grads = [f"g{j}" for j in range(len(spec.grads))]
    reduce = kind.startswith("reduce")
    with_grad = "grad" in kind
    by_device = kind.endswith("_by")
    outputs = [] if reduce else ["loss"]
    if with_grad:
        outputs += ["scale_ref" if by_device else "scale"] + grads
    if reduce:
        outputs.append("partials")
    point_args = [f"a{i}[i]" for i in range(spec.arrays)] + params
    point_args += [f"FLAG_{f.upper()}" for f in spec.flags]

    lines = [
        "@cuda.jit(cache=CACHE)",
        f"def {kind}({', '.join(arrays + params + outputs)}):",
    ]
    if reduce:
        lines.append("    acc = cuda.shared.array(THREADS, float64)")
    lines += [
        "    t = cuda.threadIdx.x",
        "    start = cuda.blockIdx.x * CHUNK + t",
        "    n = a0.size",
    ]
    if by_device:
        lines.append("    scale = scale_ref[0]")
    if reduce:
        lines.append("    s = float64(0.0)")
    lines += [
        "    for k in range(ITEMS):",
        "        i = start + k * THREADS",
        "        if i < n:",
    ]
    body = "            "
    weight = "w[i]" if weighted else None
    lines += [body + line for line in point_statements(spec, point_args, with_grad, weight)]
    if with_grad:
        lines += [f"{body}g{j}[i] = d{j} * scale" for j in range(len(grads))]
    if reduce:
        lines.append(f"{body}s += float64(v)")
        lines.append("    acc[t] = s")
        lines += _tree("    ", threads, "partials[cuda.blockIdx.x] = total")
    else:
        lines.append(f"{body}loss[i] = v")
    return "\n".join(lines) + "\n"


def _header(doc: str, threads: int, items: int) -> list[str]:
    return [
        f'"""{doc} Generated by fastloss.kernels.cuda.elementwise; do not edit."""',
        "",
        "from numba import cuda, float64",
        "",
        "from fastloss.kernels._cache import enabled",
        "",
        "CACHE = enabled()",
        f"THREADS = {threads}",
        f"ITEMS = {items}",
        "CHUNK = THREADS * ITEMS",
    ]


def module_source(
    spec: ElementwiseSpec, flags: tuple[bool, ...], weighted: bool, threads: int, items: int
) -> str:
    """Source of the generated CUDA module of ``spec`` for these options and launch shape."""
    value_grad = spec.value_grad
    header = _header(f"CUDA kernels of {spec.name}.", threads, items)
    header[3:3] = [
        "",
        "from fastloss.kernels.cuda.elementwise import device_function",
        "from fastloss.kernels.scalar import const",
        "from fastloss.kernels.vmath import log",
        f"from {value_grad.__module__} import {value_grad.__name__} as _value_grad",
        "",
        "value_grad = device_function(_value_grad)",
    ]
    header += [
        f"FLAG_{name.upper()} = {bool(v)}" for name, v in zip(spec.flags, flags, strict=True)
    ]
    parts = ["\n".join(header) + "\n"]
    kinds = KINDS + (("reduce_value_grad_by",) if weighted else ())
    for kind in kinds:
        parts.append(_kernel_source(spec, kind, weighted, threads))
    return "\n\n".join(parts)


def _copy_source(src_ndim: int, ndim: int) -> str:
    """``copy_<src_ndim>_<ndim>(src, dst)``: ``dst`` (``ndim`` dimensions, any strides)
    receives ``src`` (``src_ndim <= ndim`` dimensions aligned with the last ones of ``dst``,
    any strides, dimensions of size 1 broadcast) cast to ``dst``'s dtype."""
    lines = [
        "@cuda.jit(cache=CACHE)",
        f"def copy_{src_ndim}_{ndim}(src, dst):",
        "    i = cuda.blockIdx.x * THREADS + cuda.threadIdx.x",
        "    if i < dst.size:",
    ]
    if ndim == 0:
        lines.append("        dst[()] = src[()]")
        return "\n".join(lines) + "\n"
    lines.append("        j = i")
    for d in range(ndim - 1, 0, -1):
        lines += [f"        c{d} = j % dst.shape[{d}]", f"        j = j // dst.shape[{d}]"]
    lines.append("        c0 = j")
    source = [f"c{ndim - src_ndim + e} if src.shape[{e}] != 1 else 0" for e in range(src_ndim)]
    source_index = ", ".join(source) if source else "()"
    target_index = ", ".join(f"c{d}" for d in range(ndim))
    lines.append(f"        dst[{target_index}] = src[{source_index}]")
    return "\n".join(lines) + "\n"


def common_source(threads: int, items: int) -> str:
    """Source of the shared kernels of a launch shape (see the module docstring)."""
    header = _header("Shared CUDA kernels of the elementwise losses.", threads, items)
    total = [  # thread t adds partials t, t + THREADS, ... in index order
        "    acc = cuda.shared.array(THREADS, float64)",
        "    t = cuda.threadIdx.x",
        "    s = float64(0.0)",
        "    for b in range(t, nparts, THREADS):",
        "        s += partials[b]",
        "    acc[t] = s",
    ]
    kernels = [
        # Partial sums of an array (the weights of a weighted mean), chunked like the losses.
        [
            "def block_sum(x, partials):",
            "    acc = cuda.shared.array(THREADS, float64)",
            "    t = cuda.threadIdx.x",
            "    start = cuda.blockIdx.x * CHUNK + t",
            "    n = x.size",
            "    s = float64(0.0)",
            "    for k in range(ITEMS):",
            "        i = start + k * THREADS",
            "        if i < n:",
            "            s += float64(x[i])",
            "    acc[t] = s",
            *_tree("    ", threads, "partials[cuda.blockIdx.x] = total"),
        ],
        [
            "def finalize(partials, nparts, denominator, out):",
            *total,
            *_tree("    ", threads, "out[()] = total / denominator"),
        ],
        [
            "def finalize_by(partials, nparts, denominator, out):",
            *total,
            *_tree("    ", threads, "out[()] = total / denominator[0]"),
        ],
        [
            "def finalize_weights(partials, nparts, denominator, scale):",
            *total,
            *_tree("    ", threads, "denominator[0] = total", "scale[0] = 1.0 / total"),
        ],
        [
            "def fill(dst, value):",
            "    i = cuda.blockIdx.x * THREADS + cuda.threadIdx.x",
            "    if i < dst.size:",
            "        dst[i] = value",
        ],
        # Sum of a contiguous gradient over broadcast dimensions: output element j (C order
        # over ``keep``) adds, in increasing k, the elements at offset(j over keep) +
        # offset(k over red), ``strides`` being the gradient's element strides.
        [
            "def unbroadcast(grad, out, keep, red, strides, count):",
            "    j = cuda.blockIdx.x * THREADS + cuda.threadIdx.x",
            "    if j < out.size:",
            "        r = len(keep)",
            "        base = 0",
            "        q = j",
            "        for e in range(r):",
            "            d = r - 1 - e",
            "            base += (q % keep[d]) * strides[d]",
            "            q = q // keep[d]",
            "        s = float64(0.0)",
            "        for k in range(count):",
            "            o = base",
            "            q = k",
            "            for e in range(r):",
            "                d = r - 1 - e",
            "                o += (q % red[d]) * strides[d]",
            "                q = q // red[d]",
            "            s += float64(grad[o])",
            "        out[j] = s",
        ],
    ]
    parts = ["\n".join(header) + "\n"]
    parts += ["\n".join(["@cuda.jit(cache=CACHE)", *k]) + "\n" for k in kernels]
    for ndim in range(MAX_COPY_NDIM + 1):
        for src_ndim in range(ndim + 1):
            parts.append(_copy_source(src_ndim, ndim))
    return "\n\n".join(parts)


# --- generated modules ---------------------------------------------------------------------------


def kernels(spec: ElementwiseSpec, flags: tuple[bool, ...] = (), weighted: bool = False):
    """The generated CUDA module of ``spec`` for these flags at the current launch shape
    (memoised, thread-safe). Its kernels compile on first launch and cache on disk."""
    threads, items = launch_shape()

    def build():
        check_flags(spec.name, spec.flags, flags)
        stem = f"cuda_{module_stem(spec, flags, weighted)}_t{threads}_i{items}"
        return load_module(stem, module_source(spec, flags, weighted, threads, items))

    return memoised(("cuda", spec, flags, weighted, threads, items), build)


def common():
    """The generated module of shared kernels at the current launch shape (memoised)."""
    threads, items = launch_shape()
    stem = f"cuda_common_t{threads}_i{items}"
    return memoised(("cuda", stem), lambda: load_module(stem, common_source(threads, items)))
