"""Plan and launch of elementwise losses: arrays in, kernel, result out.

``run`` takes arrays already converted by the public function (dtype, shape checks), picks the
kernel for (loss, options, reduction, with or without gradient and second derivative, serial or
parallel), allocates the gradient once or uses ``out=``, launches, and shapes the result.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np

from fastloss import _reduction, _threading
from fastloss._intake import broadcast_shape, split_out
from fastloss._reduction import divide, fresh_state

# Below this many elements a serial kernel runs: a parallel launch costs microseconds that a
# small input does not repay. Both variants give the same bits (same block code).
PARALLEL_THRESHOLD = 1 << 20

_specs: dict[str, object] = {}


def spec(family: str, name: str):
    """The kernel declaration ``fastloss.kernels.<family>.<name>`` (imports Numba lazily)."""
    key = family + "." + name
    found = _specs.get(key)
    if found is None:
        found = getattr(importlib.import_module("fastloss.kernels." + family), name)
        _specs[key] = found
    return found


_elementwise = None
_modules: dict[tuple, object] = {}


def _factory():
    global _elementwise
    if _elementwise is None:
        _threading.prepare()  # before anything can launch a parallel kernel
        _elementwise = importlib.import_module("fastloss.kernels.elementwise")
    return _elementwise


def _module(kernel_spec, flags: tuple[bool, ...], weighted: bool, patterned: tuple = ()):
    key = (kernel_spec, flags, weighted, patterned)
    module = _modules.get(key)
    if module is None:
        module = _modules[key] = _factory().kernels(kernel_spec, flags, weighted, patterned)
    return module


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_hess(kernel_spec) -> None:
    """``return_hess=True`` needs a spec whose point function gives the second derivative."""
    if not kernel_spec.hess:
        raise NotImplementedError(
            f"return_hess: the loss {kernel_spec.name!r} declares no second derivative "
            "(its ElementwiseSpec has hess=False)"
        )


def run_plain(
    kernel_spec, arrays, params, flags, reduction: str, return_grad: bool, return_hess=False
):
    """The common case without the general planning, or ``None`` when it does not apply.

    Applies to NumPy arrays of one float32/float64 dtype and one shape, all C-contiguous, with
    no weight and no ``out``: small inputs then cost little more than the kernel call. While an
    :class:`~fastloss.Accumulator` updates, the reduction goes into its state as in
    :func:`run` (the result is then the running sum), so a chunk costs what a one-shot call
    on it costs.
    """
    first = arrays[0]
    if type(first) is not np.ndarray:
        return None
    sink = _reduction.active() if reduction != "none" else None
    dtype = first.dtype
    if dtype not in _FAST_DTYPES or not first.flags.c_contiguous:
        return None
    shape = first.shape
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape:
            return None
        if not a.flags.c_contiguous:
            return None
    if return_hess:
        check_hess(kernel_spec)
    flat = arrays if first.ndim == 1 else [a.reshape(-1) for a in arrays]
    n = first.size
    module = _module(kernel_spec, flags, False)
    scalar = dtype.type
    typed = tuple(scalar(p) for p in params) if params else ()
    if sink is not None:
        return _accumulate_plain(sink, kernel_spec, module, flat, typed, shape, reduction,
                                 return_grad or return_hess, return_hess)  # fmt: skip
    if return_hess:
        grads = [np.empty(shape, dtype) for _ in kernel_spec.grads]
        hess = np.empty(shape, dtype)
        outputs = (*[g.reshape(-1) for g in grads], hess.reshape(-1))
        grad = grads[0] if len(grads) == 1 else tuple(grads)
        if reduction == "none":
            loss = np.empty(shape, dtype)
            args = (*flat, *typed, loss.reshape(-1), scalar(1.0), *outputs)
            _launch(module, "map_value_grad_hess", n, args)
            return loss, grad, hess
        mean = reduction == "mean"
        scale = scalar(1.0 / n if n and mean else 1.0)
        total = _reduce(module, "reduce_value_grad_hess", n, (*flat, *typed, scale, *outputs))
        return scalar(divide(total, n) if mean else total), grad, hess
    if reduction == "none":
        loss = np.empty(shape, dtype)
        if not return_grad:
            _launch(module, "map_value", n, (*flat, *typed, loss.reshape(-1)))
            return loss
        grads = [np.empty(shape, dtype) for _ in kernel_spec.grads]
        _launch(
            module,
            "map_value_grad",
            n,
            (*flat, *typed, loss.reshape(-1), scalar(1.0), *[g.reshape(-1) for g in grads]),
        )
        return loss, (grads[0] if len(grads) == 1 else tuple(grads))
    mean = reduction == "mean"
    if not return_grad:
        total = _reduce(module, "reduce_value", n, (*flat, *typed))
        return scalar(divide(total, n) if mean else total)
    grads = [np.empty(shape, dtype) for _ in kernel_spec.grads]
    scale = scalar(1.0 / n if n and mean else 1.0)
    total = _reduce(
        module, "reduce_value_grad", n, (*flat, *typed, scale, *[g.reshape(-1) for g in grads])
    )
    value = scalar(divide(total, n) if mean else total)
    return value, (grads[0] if len(grads) == 1 else tuple(grads))


def _accumulate_plain(sink, kernel_spec, module, flat, typed: tuple, shape: tuple,
                      reduction: str, return_grad: bool, return_hess: bool = False):  # fmt: skip
    """:func:`run_plain` while an Accumulator updates: the chunk's sum and count into the
    sink's quantity, as :func:`run` adds them."""
    dtype = flat[0].dtype
    n = flat[0].size
    grad_args = ()
    if return_grad:
        scale = sink.grad_scale(reduction, dtype)  # raises before anything changes
        grads = [np.empty(shape, dtype) for _ in kernel_spec.grads]
        hess = [np.empty(shape, dtype)] if return_hess else []
        grad_args = (scale, *[g.reshape(-1) for g in grads + hess])
    quantity = sink.quantity("loss", reduction, kernel_spec.log_factor)
    kind = "reduce_value_grad" if return_grad else "reduce_value"
    kind += "_hess" if return_hess else ""
    total = _reduction.accumulate(quantity.sum, module, kind, n, flat, typed, grad_args)
    quantity.count += n
    value = dtype.type(total)
    if not return_grad:
        return value
    grad = grads[0] if len(grads) == 1 else tuple(grads)
    return (value, grad, hess[0]) if return_hess else (value, grad)


def _reduce(module, kind: str, n: int, args: tuple) -> float:
    """The sum of a whole array (from element 0) by reduction kernel ``kind``, under the
    reduction contract: the same bits for any thread count and chunking."""
    state, levels, indices, values = fresh_state()
    _, total = _launch(module, kind, n, (*args, 0, state, levels, indices, values, 0))
    return total


def sum_array(values: np.ndarray) -> float:
    """The sum of a 1-D float array under the reduction contract (weight sums, row losses)."""
    module = _module(spec("sums", "SUM"), (), False)
    return _reduce(module, "reduce_value", values.size, (values,))


def _chunked_sum(view: np.ndarray) -> float:
    """:func:`sum_array` of the elements of ``view`` in C order, copied a chunk at a time: the
    chunks continue one reduction state, so the bits are those of the whole array's sum."""
    partial = _reduction.Partial(0)
    module = _module(spec("sums", "SUM"), (), False)
    for part in _c_chunks(view):
        _reduction.accumulate(partial, module, "reduce_value", part.size, (part,), ())
    return partial.total()


def _launch(module, kind: str, n: int, args: tuple):
    if n < PARALLEL_THRESHOLD:
        return getattr(module, kind + "_serial")(*args)
    kernel = getattr(module, kind + "_parallel")
    with _threading.parallel_guard:
        result = kernel(*args)
    if not _threading.layer_known:
        _threading.after_launch()
    return result


def _broadcast_pattern(a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A broadcast view ``a`` (a zero stride along a dimension longer than 1) as the kernels
    take it without a copy: ``(memory, pattern)``, ``memory`` a read-only 1-D view of the
    elements it spans and ``pattern`` ``[outer_stride, inner_stride, inner, offset]`` (in
    elements), element ``i`` in C order being ``memory[(i // inner) * outer_stride + (i % inner)
    * inner_stride]`` (see :mod:`fastloss.kernels.elementwise`). ``None`` where ``a`` is no
    broadcast, or its dimensions do not merge into two levels, or its strides are negative or
    not whole elements: it is then copied."""
    dims = [(size, stride) for size, stride in zip(a.shape, a.strides, strict=True) if size != 1]
    if not any(stride == 0 for _, stride in dims) or not a.flags.aligned:
        return None
    itemsize = a.itemsize
    if any(stride < 0 or stride % itemsize for _, stride in dims):
        return None
    merged: list[tuple[int, int]] = []
    for size, stride in dims:  # C order: a dimension merges into the one before it
        if merged and merged[-1][1] == stride * size:
            merged[-1] = (merged[-1][0] * size, stride)
        else:
            merged.append((size, stride))
    if len(merged) > 2:
        return None
    (rows, outer), (inner, step) = [(1, 0)] * (2 - len(merged)) + merged
    span = ((rows - 1) * outer + (inner - 1) * step) // itemsize + 1
    memory = np.lib.stride_tricks.as_strided(a, (span,), (itemsize,), writeable=False)
    pattern = np.array([outer // itemsize, step // itemsize, inner, 0], np.int64)
    return memory, pattern


def _c_operands(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], dict[int, tuple]]:
    """The operands in C order: C-contiguous ones as they are, broadcast views after the first
    as memory and pattern (:func:`_broadcast_pattern`, keyed by position), the others copied."""
    patterns = {}
    operands = []
    for j, a in enumerate(arrays):
        if not a.flags.c_contiguous:
            found = _broadcast_pattern(a) if j else None
            if found is not None:
                patterns[j] = found
            else:
                a = np.ascontiguousarray(a)
        operands.append(a)
    return operands, patterns


def _split_patterned(positions: frozenset[int]):
    """How an Accumulator's head splits kernel arguments whose ``positions`` are broadcast
    operands' patterns (:func:`fastloss._reduction.accumulate`): a pattern's offset moves
    by the head, its memory stays whole, other arrays are sliced."""

    def split(args: tuple, head: int) -> tuple[tuple, tuple]:
        first, rest = [], []
        for j, a in enumerate(args):
            if j in positions:
                moved = a.copy()
                moved[3] += head
                first.append(a)
                rest.append(moved)
            elif j + 1 in positions:  # a broadcast operand's memory
                first.append(a)
                rest.append(a)
            else:
                first.append(a[:head])
                rest.append(a[head:])
        return tuple(first), tuple(rest)

    return split


# Elements of a broadcast weight materialised at a time for the sum of a weighted mean.
_WEIGHT_CHUNK = PARALLEL_THRESHOLD


def _c_chunks(view: np.ndarray, size: int | None = None):
    """Copies of consecutive parts of ``view`` (C order, 1-D), at most ``size`` elements each
    (default ``_WEIGHT_CHUNK``): whole rows of the leading axis, or parts of one row."""
    if size is None:
        size = _WEIGHT_CHUNK
    if view.size <= size:
        yield np.ascontiguousarray(view).reshape(-1)
    elif view.ndim == 1:
        for lo in range(0, view.size, size):
            yield np.ascontiguousarray(view[lo : lo + size])
    elif view[0].size > size:
        for row in view:
            yield from _c_chunks(row, size)
    else:
        step = size // view[0].size
        for lo in range(0, view.shape[0], step):
            yield np.ascontiguousarray(view[lo : lo + step]).reshape(-1)


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes along which an input of ``shape`` was broadcast."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def check_out(out: object, shape: tuple[int, ...], dtype: np.dtype, name: str) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        if out.dtype.newbyteorder("=") == dtype:
            raise ValueError(
                f"{name}: expected dtype {dtype} in native byte order, got {out.dtype.str} "
                "(the gradient is written in native byte order)"
            )
        raise ValueError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array, got a read-only one")
    return out


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def run(
    kernel_spec,
    arrays: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    params: Sequence[float] = (),
    flags: tuple[bool, ...] = (),
    reduction: str = "mean",
    weight: np.ndarray | None = None,
    mean_by_weight: bool = False,
    return_grad: bool = False,
    out: object = None,
    grad_dtypes: Sequence[np.dtype] | None = None,
    denominator: float | None = None,
    return_hess: bool = False,
):
    """Compute an elementwise loss, and its gradients, in one pass.

    ``arrays`` are NumPy arrays in the compute dtype, broadcastable together; the gradients
    are with respect to ``arrays[i]`` for ``i`` in ``kernel_spec.grads``, returned in the shape of
    those arrays and in ``grad_dtypes`` (default: the compute dtype). ``weight`` (same shape
    as the broadcast inputs, or of ``arrays[0]``, broadcast as it is) multiplies each element's
    loss; with ``mean_by_weight`` the mean divides by the sum of ``weight``'s own elements
    (torch's rule) instead of the element count, and ``denominator``
    (batchmean's batch size) replaces the element count where given.

    With ``return_hess`` (which implies ``return_grad``) the result is ``(loss, grad, hess)``:
    ``hess`` the second derivative of the returned loss with respect to ``arrays[0]``, element
    by element, in that array's shape and in ``grad_dtypes[0]``, from the same pass.

    While an :class:`~fastloss.Accumulator` updates (:func:`fastloss._reduction.active`), the
    reduction goes into its state instead and the result is the running sum.
    """
    if return_hess:
        check_hess(kernel_spec)
        return_grad = True
    dtype = arrays[0].dtype
    shapes = [a.shape for a in arrays]
    shape = shapes[0]
    for other in shapes:
        if other != shape:
            shape = broadcast_shape(shapes, list(names))
            arrays = [a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays]
            break
    weights = None  # the denominator of a weighted mean: weight's own elements (torch's rule)
    if weight is not None:
        if mean_by_weight:
            weights = weight
        if weight.shape != shape:  # weight has input's shape: it broadcasts as input does
            weight = np.broadcast_to(weight, shape)
        arrays = [*arrays, weight]
    # One memory order for every operand: C, or F when all are Fortran-contiguous. In C order
    # a broadcast operand after the input goes to the kernel as its own memory and a pattern
    # (no copy, see _broadcast_pattern); other operands in neither order (strided views, a
    # broadcast input, broadcasts that do not collapse to two levels) are copied.
    order = "C"
    patterns: dict[int, tuple] = {}
    for a in arrays:
        if not a.flags.c_contiguous:
            if all(a.flags.f_contiguous for a in arrays):
                order = "F"
            else:
                arrays, patterns = _c_operands(arrays)
            break
    flat = []
    positions = []  # of the patterns among the kernel's arguments
    for j, a in enumerate(arrays):
        if j in patterns:
            flat += patterns[j]
            positions.append(len(flat) - 1)
        else:
            flat.append(a.reshape(-1, order=order))
    n = flat[0].size
    split = _split_patterned(frozenset(positions)) if patterns else None

    module = _module(kernel_spec, flags, weight is not None, tuple(sorted(patterns)))
    scalar = dtype.type
    typed = tuple(scalar(p) for p in params) if params else ()

    grad_index = kernel_spec.grads
    if grad_dtypes is None:
        grad_dtypes = [dtype] * len(grad_index)
    outs = split_out(out, return_grad, len(grad_index))
    for j, i in enumerate(grad_index):
        if outs[j] is not None:
            label = "out" if len(grad_index) == 1 else f"out[{j}]"
            check_out(outs[j], shapes[i], grad_dtypes[j], label)

    # Gradient buffers the kernel writes: the caller's ``out`` itself when it can be.
    grads: list[np.ndarray] = []
    if return_grad:
        for j, i in enumerate(grad_index):
            target = outs[j]
            usable = (
                target is not None
                and shapes[i] == shape
                and target.dtype == dtype
                and (target.flags.c_contiguous if order == "C" else target.flags.f_contiguous)
                and not any(
                    np.may_share_memory(target, a) and not _same_memory(target, a) for a in arrays
                )
            )
            grads.append(target if usable else np.empty(shape, dtype, order=order))
        if return_hess:
            hess = np.empty(shape, dtype, order=order)
            grads.append(hess)
        flat_grads = [g.reshape(-1, order=order) for g in grads]

    if reduction == "none":
        loss = np.empty(shape, dtype, order=order)
        flat_loss = loss.reshape(-1, order=order)
        if return_grad:
            _launch(
                module,
                "map_value_grad_hess" if return_hess else "map_value_grad",
                n,
                (*flat, *typed, flat_loss, dtype.type(1.0), *flat_grads),
            )
        else:
            _launch(module, "map_value", n, (*flat, *typed, flat_loss))
        result = loss
    else:
        # the weights' own elements: small where weight broadcasts; a broadcast view of the
        # full shape is summed in copied chunks (_c_chunks), as the contract allows
        chunked = weights is not None and weights.shape == shape and len(arrays) - 1 in patterns
        if chunked:
            weights = arrays[-1]
        elif weights is not None:
            weights = flat[-1] if weights.shape == shape else np.ascontiguousarray(weights).ravel()
        kind = "reduce_value_grad" if return_grad else "reduce_value"
        kind += "_hess" if return_hess else ""
        grad_args = ()
        sink = _reduction.active()
        if sink is not None:
            quantity = sink.quantity("loss", reduction, kernel_spec.log_factor and weight is None)
            if return_grad:
                grad_args = (sink.grad_scale(reduction, dtype), *flat_grads)
            total = _reduction.accumulate(
                quantity.sum, module, kind, n, tuple(flat), typed, grad_args, split
            )
            count = n if denominator is None else denominator
            for part in _c_chunks(weights) if chunked else (weights,):
                _reduction.add_denominator(quantity, part, count, sink.start)
            result = scalar(total)
        else:
            if reduction != "mean":
                denominator = 1.0
            elif chunked:
                denominator = _chunked_sum(weights)
            elif weights is not None:
                denominator = sum_array(weights)
            elif denominator is None:
                denominator = n
            if return_grad:
                scale = dtype.type(1.0 / denominator) if denominator else dtype.type(np.inf)
                grad_args = (scale, *flat_grads)
            total = _reduce(module, kind, n, (*flat, *typed, *grad_args))
            result = scalar(divide(total, denominator) if reduction == "mean" else total)
    if not return_grad:
        return result

    if return_hess:
        hess = _unbroadcast(grads.pop(), shapes[0])
        if hess.dtype != grad_dtypes[0]:
            hess = hess.astype(grad_dtypes[0])
    finished = []
    for j, i in enumerate(grad_index):
        grad = _unbroadcast(grads[j], shapes[i])
        target = outs[j]
        if target is None:
            if grad.dtype != grad_dtypes[j]:
                grad = grad.astype(grad_dtypes[j])
            finished.append(grad)
        else:
            if grad is not target:
                np.copyto(target, grad, casting="same_kind")
            finished.append(target)
    grad = finished[0] if len(finished) == 1 else tuple(finished)
    return (result, grad, hess) if return_hess else (result, grad)
