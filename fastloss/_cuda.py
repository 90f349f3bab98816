"""Device path of the elementwise losses: intake, plan and launch on a CUDA device.

``run`` is the twin of :func:`fastloss._elementwise.run` for arrays that live on a CUDA device:
CuPy arrays, Numba device arrays (the CUDA simulator's included) and anything else exposing
``__cuda_array_interface__`` (viewed as a Numba device array). It checks dtypes and shapes as
the CPU path does, broadcasts and casts on the device where it must, allocates the gradient once
or writes it into ``out=``, launches the fused kernel of :mod:`fastloss.kernels.cuda.elementwise`
and, for ``"mean"``/``"sum"``, a one-block kernel that writes the loss into a 0-d device array.

Nothing on this path waits for the device: no ``.item()``, ``float()`` or copy to the host. All
work goes on one stream, in order: CuPy's current stream when a CuPy array is involved (wrapped
once per stream pointer with ``numba.cuda.external_stream``), else the stream a
``__cuda_array_interface__`` exporter names, else Numba's default stream. Results are allocated
with CuPy when ``input`` is a CuPy array, else with ``numba.cuda.device_array``.

This module is pure Python and imports Numba only on the first device call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastloss._intake import broadcast_shape, compute_dtype, split_out

_backend: tuple | None = None
_backend_lock = threading.Lock()


def _modules():
    """``(numba.cuda, fastloss.kernels.cuda.elementwise)``, imported on first use."""
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                from numba import cuda

                from fastloss.kernels.cuda import elementwise

                _backend = (cuda, elementwise)
    return _backend


# --- intake ----------------------------------------------------------------------------------


@dataclass
class _Operand:
    """One argument on the device: the array (or a Python scalar), its kind and layout."""

    value: object
    kind: str  # "cupy", "numba" or "scalar"
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...] = ()
    stream: int | None = None  # the stream a __cuda_array_interface__ exporter named

    def contiguous(self, order: str) -> bool:
        if self.kind == "scalar":
            return False
        expected = self.dtype.itemsize
        dims = range(len(self.shape))
        if any(s == 0 for s in self.shape):
            return True
        for d in reversed(dims) if order == "C" else dims:
            if self.shape[d] != 1 and self.strides[d] != expected:
                return False
            expected *= self.shape[d]
        return True


def _is_cupy(x: object) -> bool:
    return type(x).__module__.split(".", 1)[0] == "cupy"


def _intake(x: object, name: str) -> _Operand:
    """Recognise a device array (or a real Python/NumPy scalar, broadcast on the device)."""
    if hasattr(x, "detach") and getattr(x, "requires_grad", False):
        x = x.detach()  # a tensor that records autograd refuses to export its memory
    if _is_cupy(x) and hasattr(x, "__cuda_array_interface__"):
        kind = "cupy"
    elif getattr(type(x), "__cuda_ndarray__", False):
        kind = "numba"  # numba.cuda device arrays, the simulator's included
    elif hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        cuda = _modules()[0]
        stream = x.__cuda_array_interface__.get("stream")
        x = cuda.as_cuda_array(x, sync=False)  # ordered by launching on ``stream`` instead
        return _Operand(x, "numba", tuple(x.shape), np.dtype(x.dtype), tuple(x.strides), stream)
    elif isinstance(x, int | float | np.integer | np.floating | np.bool_):
        dtype = np.asarray(x).dtype
        return _Operand(x, "scalar", (), dtype)
    else:
        raise TypeError(
            f"{name}: expected a device array (CuPy, Numba or __cuda_array_interface__) like "
            f"the other arguments, got {type(x).__module__}.{type(x).__name__}; "
            "move it to the device first"
        )
    shape = tuple(int(s) for s in x.shape)
    return _Operand(x, kind, shape, np.dtype(x.dtype), tuple(int(s) for s in x.strides))


def _check_dtype(op: _Operand, name: str) -> None:
    dtype = op.dtype
    if dtype.kind not in "fiub" or (dtype.kind == "f" and dtype.itemsize > 8):
        raise TypeError(f"{name}: expected a floating, integer or bool dtype, got {dtype}")


def _span(flat: object) -> tuple[int, int]:
    """``[first, last)`` byte addresses of a contiguous 1-D array (device or, in the
    simulator, host memory)."""
    if _is_cupy(flat):
        start = flat.data.ptr
    else:
        interface = getattr(flat, "__cuda_array_interface__", None)
        if interface is None:  # the simulator's arrays live in host memory
            interface = flat.__array_interface__
        start = interface["data"][0]
    return start, start + flat.size * flat.dtype.itemsize


# --- streams and allocation ----------------------------------------------------------------

_streams: dict[int, object] = {}


def _numba_stream(ptr: int | None):
    """Numba stream object for a CUDA stream handle (0/None: Numba's default stream)."""
    if not ptr:
        return 0
    stream = _streams.get(ptr)
    if stream is None:
        cuda = _modules()[0]
        if ptr == 1:
            stream = cuda.legacy_default_stream()
        elif ptr == 2:
            stream = cuda.per_thread_default_stream()
        else:
            stream = cuda.external_stream(ptr)
        _streams[ptr] = stream
    return stream


def _launch_stream(ops: list[_Operand]):
    if any(op.kind == "cupy" for op in ops):
        import cupy

        # CuPy's null stream (pointer 0) is the legacy default stream: name it as such (1),
        # since DLPack, through which Numba takes CuPy arrays, has no meaning for stream 0.
        return _numba_stream(cupy.cuda.get_current_stream().ptr or 1)
    for op in ops:
        if op.stream is not None:
            return _numba_stream(op.stream)
    return 0


class _Plan:
    """Allocation and launches of one call: one array library, one stream, one launch shape."""

    def __init__(self, cupy_results: bool, stream):
        self.cuda, factory = _modules()
        self.common = factory.common()
        self.threads, self.items = factory.launch_shape()
        self.cupy_results = cupy_results
        self.stream = stream

    def empty(self, shape: tuple[int, ...], dtype, order: str = "C"):
        if self.cupy_results:
            import cupy

            return cupy.empty(shape, dtype, order=order)
        return self.cuda.device_array(shape, np.dtype(dtype), order=order, stream=self.stream)

    def launch(self, kernel, n: int, per_thread: int, *args) -> None:
        """Launch ``kernel`` over ``n`` elements, ``per_thread`` elements per thread."""
        per_block = self.threads * per_thread
        blocks = max(1, -(-n // per_block))
        kernel[blocks, self.threads, self.stream](*args)

    def copy(self, src: object, dst: object) -> None:
        """``dst[...] = src`` on the device: ``src`` broadcast to ``dst``'s shape (aligned on
        the last dimensions) and cast to its dtype; any strides on either side."""
        size = math.prod(dst.shape)
        if size == 0:
            return
        ndim, src_ndim = len(dst.shape), len(src.shape)
        kernel = getattr(self.common, f"copy_{src_ndim}_{ndim}", None)
        if kernel is None:
            raise ValueError(
                f"device arrays of {ndim} dimensions that need a copy (broadcast, cast or "
                "non-contiguous) are not supported; flatten them or make them contiguous in "
                "the compute dtype first"
            )
        self.launch(kernel, size, 1, src, dst)

    def materialise(self, op: _Operand, shape: tuple[int, ...], dtype: np.dtype):
        """``op`` broadcast to ``shape``, in ``dtype``, as a new 1-D C-order device array."""
        n = math.prod(shape)
        if op.kind == "scalar":
            dst = self.empty((n,), dtype)
            if n:
                self.launch(self.common.fill, n, 1, dst, dtype.type(op.value))
            return dst
        dst = self.empty(shape, dtype)
        self.copy(op.value, dst)
        return dst.reshape((n,))

    def unbroadcast(self, grad, order: str, shape: tuple[int, ...], target: tuple[int, ...]):
        """Sum ``grad`` (1-D, ``order`` over ``shape``) over the dimensions along which an
        array of shape ``target`` was broadcast: a new 1-D C-order array over ``target``."""
        m = math.prod(target)
        n = math.prod(shape)
        out = self.empty((m,), grad.dtype)
        if m == 0:
            return out
        if n == 0:
            self.launch(self.common.fill, m, 1, out, grad.dtype.type(0))
            return out
        chunk = self.threads * self.items
        if m == 1 and n > chunk:
            # Everything sums into one element: two-level block reduction, not one thread.
            blocks = -(-n // chunk)
            partials = self.empty((blocks,), np.float64)
            self.launch(self.common.block_sum, n, self.items, grad, partials)
            single = self.empty((), grad.dtype)
            self.common.finalize[1, self.threads, self.stream](
                partials, blocks, np.float64(1.0), single
            )
            return single.reshape((1,))
        rank = len(shape)
        padded = (1,) * (rank - len(target)) + tuple(target)
        strides = []
        step = 1
        for d in reversed(range(rank)) if order == "C" else range(rank):
            strides.append(step)
            step *= shape[d]
        if order == "C":
            strides.reverse()
        red = tuple(s if p == 1 else 1 for s, p in zip(shape, padded, strict=True))
        count = math.prod(red)
        self.launch(self.common.unbroadcast, m, 1, grad, out, padded, red, tuple(strides), count)
        return out

    def reduce(self, module, n: int, args: tuple, reduction: str, weights, grads):
        """Launch the fused pass over ``n`` elements (``args``: flat operands, then parameters)
        writing the gradients ``grads`` (None: forward only) and the block partials, then the
        one-block kernel that writes the loss into a new 0-d array of ``args[0]``'s dtype,
        which it returns. ``weights`` (the flat weights, or None; as many as the elements, or
        fewer when they were broadcast) makes ``"mean"`` divide by their sum."""
        dtype = args[0].dtype
        blocks = -(-n // (self.threads * self.items))
        partials = self.empty((max(blocks, 1),), np.float64)
        result = self.empty((), dtype)
        single = (1, self.threads, self.stream)  # one block: the fixed-order combination
        by_weight = weights is not None
        if by_weight:
            # The denominator is the sum of the weights, on the device: reduce it first, in
            # the same fixed order, then scale the gradient by its inverse read on the device.
            m = weights.size
            weight_blocks = -(-m // (self.threads * self.items))
            weight_partials = self.empty((max(weight_blocks, 1),), np.float64)
            denominator = self.empty((1,), np.float64)
            scale = self.empty((1,), dtype)
            if m:
                self.launch(self.common.block_sum, m, self.items, weights, weight_partials)
            self.common.finalize_weights[single](weight_partials, weight_blocks, denominator, scale)
        else:
            denominator = float(n) if reduction == "mean" else 1.0
            scale = dtype.type(1.0 / denominator) if denominator else dtype.type(np.inf)
        if n and grads is not None:
            kernel = module.reduce_value_grad_by if by_weight else module.reduce_value_grad
            self.launch(kernel, n, self.items, *args, scale, *grads, partials)
        elif n:
            self.launch(module.reduce_value, n, self.items, *args, partials)
        if by_weight:
            self.common.finalize_by[single](partials, blocks, denominator, result)
        else:
            self.common.finalize[single](partials, blocks, np.float64(denominator), result)
        return result

    def store(self, src, shape: tuple[int, ...], order: str, target, dtype) -> object:
        """Copy, casting, ``src`` (1-D, ``order`` over ``shape``) into ``target`` (a device
        array of that shape), or into a new C-order array of ``dtype`` when ``target`` is
        None; return the array written."""
        if target is None:
            target = self.empty(shape, dtype)
        self.copy(src.reshape(shape, order=order), target)
        return target


# --- plan and launch ---------------------------------------------------------------------------


def run(
    kernel_spec,
    arrays: Sequence[object],
    names: Sequence[str],
    *,
    params: Sequence[float] = (),
    flags: tuple[bool, ...] = (),
    reduction: str = "mean",
    weight: object = None,
    mean_by_weight: bool = False,
    return_grad: bool = False,
    out: object = None,
    grad_dtypes: Sequence[np.dtype] | None = None,
    broadcast_weight: bool = False,
):
    """Compute an elementwise loss, and its gradients, in one pass on a CUDA device.

    Parameters
    ----------
    kernel_spec : ElementwiseSpec
        The loss's declaration (:mod:`fastloss.kernels.regression`).
    arrays : sequence
        The user's arrays, in ``kernel_spec``'s order: device arrays (CuPy, Numba, or with
        ``__cuda_array_interface__``), or real scalars (broadcast on the device). They
        broadcast together; ``arrays[0]`` decides the compute dtype (float16 computes in
        float32, integers and bool in float64) and the others are cast to it.
    names : sequence of str
        Argument names, for error messages.
    params : sequence of float
        Runtime parameters of the loss, passed in the compute dtype.
    flags : tuple of bool
        Compile-time options of the loss.
    reduction : {"mean", "sum", "none"}
    weight : device array, optional
        Per-element weights, the shape of ``arrays[0]`` (broadcast as it is, torch's rule).
    mean_by_weight : bool
        With ``weight``, ``"mean"`` divides by the sum of ``weight``'s own elements (computed on
        the device) instead of the element count.
    return_grad : bool
        Also return the gradients with respect to ``arrays[i]`` for ``i`` in
        ``kernel_spec.grads`` (of the sum of the losses for ``"none"``); ``None`` for an
        argument given as a scalar.
    out : device array or tuple, optional
        Receives the gradient(s); may be ``arrays[0]`` itself.
    grad_dtypes : sequence of dtype, optional
        Dtypes of the returned gradients; default: each argument's floating dtype, else the
        compute dtype.
    broadcast_weight : bool
        Accept a ``weight`` of any shape that broadcasts to the shape of ``arrays[0]`` (torch's
        rule for the binary losses); it is broadcast once, on the device, into a full-size
        array. Default: ``weight`` must have that shape.

    Returns
    -------
    loss : device array
        0-d array of the compute dtype (CuPy when ``arrays[0]`` is CuPy), or the element losses
        for ``"none"``. Nothing waits for the device.
    grad : device array or tuple
        With ``return_grad=True``.
    """
    names = list(names)
    ops = [_intake(a, name) for a, name in zip(arrays, names, strict=True)]
    dtype = compute_dtype(ops[0].dtype, names[0])
    for op, name in zip(ops, names, strict=True):
        _check_dtype(op, name)
    wop = None
    if weight is not None:
        wop = _intake(weight, "weight")
        _check_dtype(wop, "weight")
    shapes = [op.shape for op in ops]
    shape = shapes[0]
    if any(s != shape for s in shapes):
        shape = broadcast_shape(list(shapes), names)
    if wop is not None and broadcast_weight:
        try:
            fits = shape == shapes[0] and np.broadcast_shapes(wop.shape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"weight: expected a shape that broadcasts to the shape of input {shapes[0]}, "
                f"got {wop.shape}"
            )
    elif wop is not None and wop.shape != shapes[0]:
        raise ValueError(f"weight: expected the shape of input {shapes[0]}, got {wop.shape}")
    n = math.prod(shape)

    grad_index = kernel_spec.grads
    if grad_dtypes is None:
        grad_dtypes = [
            ops[i].dtype if ops[i].dtype.kind == "f" and ops[i].kind != "scalar" else dtype
            for i in grad_index
        ]
    grad_dtypes = [np.dtype(g) for g in grad_dtypes]
    outs = _check_out(out, return_grad, [shapes[i] for i in grad_index], grad_dtypes)

    every = ops + ([wop] if wop is not None else [])
    plan = _Plan(ops[0].kind == "cupy", _launch_stream(every))
    module = _modules()[1].kernels(kernel_spec, tuple(flags), wop is not None)

    # One memory order for every operand: C, or F when all are Fortran-contiguous and need
    # nothing else; the others are broadcast/cast/copied into new C-order arrays.
    def direct(op: _Operand, order: str) -> bool:
        return (
            op.kind != "scalar" and op.shape == shape and op.dtype == dtype and op.contiguous(order)
        )

    order = "F" if not all(direct(op, "C") for op in every) else "C"
    if order == "F" and not all(direct(op, "F") for op in every):
        order = "C"
    flat = [
        op.value.reshape((n,), order=order)
        if direct(op, order)
        else plan.materialise(op, shape, dtype)
        for op in every
    ]

    # Gradient buffers the kernel writes: the caller's ``out`` itself when it can be (right
    # shape, compute dtype, same memory order, no partial overlap with an operand).
    grads: list[object] = []
    in_place = [False] * len(grad_index)
    if return_grad:
        for j, i in enumerate(grad_index):
            target = outs[j]
            buffer = None
            if target is not None and shapes[i] == shape and direct(target, order):
                buffer = target.value.reshape((n,), order=order)
                lo, hi = _span(buffer)
                for f in flat:
                    flo, fhi = _span(f)
                    if lo < fhi and flo < hi and (flo, fhi) != (lo, hi):
                        buffer = None
                        break
            in_place[j] = buffer is not None
            grads.append(buffer if buffer is not None else plan.empty((n,), dtype))

    args = (*flat, *tuple(dtype.type(p) for p in params))
    if reduction == "none":
        loss = plan.empty((n,), dtype)
        if n and return_grad:
            plan.launch(module.map_value_grad, n, plan.items, *args, loss, dtype.type(1), *grads)
        elif n:
            plan.launch(module.map_value, n, plan.items, *args, loss)
        result = loss.reshape(shape, order=order)
    else:
        by_weight = reduction == "mean" and mean_by_weight and wop is not None
        weights = flat[-1] if by_weight else None
        if by_weight and wop.shape != shape:  # torch divides by the sum of weight itself
            weights = plan.materialise(wop, wop.shape, dtype)
        result = plan.reduce(module, n, args, reduction, weights, grads if return_grad else None)
    if not return_grad:
        return result

    finished = []
    for j, i in enumerate(grad_index):
        if ops[i].kind == "scalar":
            finished.append(None)  # a scalar argument has no gradient array
        elif in_place[j]:
            finished.append(outs[j].value)
        else:
            grad, grad_order = grads[j], order
            if shapes[i] != shape:
                grad, grad_order = plan.unbroadcast(grad, order, shape, shapes[i]), "C"
            target = outs[j].value if outs[j] is not None else None
            if target is None and grad_dtypes[j] == dtype:
                finished.append(grad.reshape(shapes[i], order=grad_order))
            else:
                finished.append(plan.store(grad, shapes[i], grad_order, target, grad_dtypes[j]))
    return result, (finished[0] if len(finished) == 1 else tuple(finished))


def _check_out(
    out: object, return_grad: bool, shapes: list[tuple[int, ...]], dtypes: list[np.dtype]
) -> list[_Operand | None]:
    """The caller's ``out`` as one operand (or None) per gradient, checked like the CPU
    path checks it."""
    outs = split_out(out, return_grad, len(shapes))
    for j, target in enumerate(outs):
        if target is None:
            continue
        label = "out" if len(shapes) == 1 else f"out[{j}]"
        op = _intake(target, label)
        if op.kind == "scalar":
            raise TypeError(f"{label}: expected a device array, got {type(target).__name__}")
        if op.shape != shapes[j]:
            raise ValueError(f"{label}: expected shape {shapes[j]}, got {op.shape}")
        if op.dtype != dtypes[j]:
            raise ValueError(f"{label}: expected dtype {dtypes[j]}, got {op.dtype}")
        outs[j] = op
    return outs


# --- small helpers of the losses that reduce over axes -----------------------------------------


def sum_axes(array: object, axes: Sequence[int]) -> object:
    """Sum a device array over ``axes`` (non-negative, distinct), on the device and in a fixed
    order: a new C-order device array of the remaining dimensions (0-d when none remain), of
    ``array``'s dtype and array library. Nothing waits for the device."""
    op = _intake(array, "array")
    shape = op.shape
    kept = tuple(1 if d in axes else s for d, s in enumerate(shape))
    result_shape = tuple(s for d, s in enumerate(shape) if d not in axes)
    plan = _Plan(op.kind == "cupy", _launch_stream([op]))
    n = math.prod(shape)
    if op.contiguous("C"):
        flat, order = op.value.reshape((n,)), "C"
    elif op.contiguous("F"):
        flat, order = op.value.reshape((n,), order="F"), "F"
    else:
        flat, order = plan.materialise(op, shape, op.dtype), "C"
    return plan.unbroadcast(flat, order, shape, kept).reshape(result_shape)


def full(like: object, shape: tuple[int, ...], dtype, value: float) -> object:
    """A new C-order device array of ``shape`` and ``dtype`` filled with ``value``, from the
    array library and on the stream of the device array ``like``."""
    op = _intake(like, "array")
    plan = _Plan(op.kind == "cupy", _launch_stream([op]))
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    dst = plan.empty((n,), dtype)
    if n:
        plan.launch(plan.common.fill, n, 1, dst, dtype.type(value))
    return dst.reshape(shape)


def to_host(array: object) -> np.ndarray:
    """A device array (or a 0-d result) copied to a NumPy array: a host synchronisation,
    for the error paths and the data-dependent checks that need one."""
    if _is_cupy(array):
        return np.asarray(array.get())
    op = _intake(array, "array")
    if op.kind == "scalar":
        return np.asarray(op.value)
    return np.asarray(op.value.copy_to_host())
