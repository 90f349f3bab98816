"""Device path of the softmax family: cross-entropy, NLL, focal loss and Keras's cross-entropies
on a CUDA device.

The device plan (:func:`run`) of :func:`fastloss.softmax.cross_entropy`,
:func:`~fastloss.softmax.nll_loss`, :func:`~fastloss.softmax.focal_loss` and Keras's three
cross-entropies for arrays that live on a CUDA device (CuPy, Numba device arrays, the
simulator's included, anything with ``__cuda_array_interface__``). It runs the call as the
public function resolved it (``fastloss.softmax._Call``, the CPU plan's too: the declaration, a
:class:`~fastloss.kernels.rows.RowSpec` of :mod:`fastloss.kernels.softmax`, its flags, params
and denominators) on the row plan of :mod:`fastloss._cuda_rows`, whose kernels
:mod:`fastloss.kernels.cuda.rows` generates from that declaration (a block per row,
:func:`fastloss._cuda_rows.launch`): the formulas are the CPU's own point functions.

``input`` is ``(C,)``, ``(N, C)`` or torch's ``(N, C, d1, ..., dk)`` (the Keras losses: classes
along the last axis), float16/32/64 (float16 computes in float32, through a device copy). The
kernels take C-contiguous ``(rows, C)`` matrices of the compute dtype: a view of ``input`` where
it is one, else a device copy (with torch's trailing dimensions, the class axis moved last, as
the CPU path does; the gradient is moved back). Class-index targets of any integer dtype, shape
``()``, ``(N,)`` or ``(N, d1, ..., dk)``; for cross-entropy also class probabilities of
``input``'s shape. Arguments are expected already validated by the public functions (reduction
name, ``smoothing`` in [0, 1], ``softcap`` > 0 or 0 for none, ...).

Synchronisation: with class-index targets, one pre-pass kernel checks every index, counts the
rows not ignored and sums their class weights; that small verdict is copied to the host, so an
out-of-range index raises :class:`IndexError` (with its value and position) before any row is
touched (``input`` included when it is ``out``), and the mean's denominator and the gradient's
scales are host floats, as on the CPU. That copy is a call's only synchronisation; everything
else is queued on one stream (CuPy's current stream when ``input`` is CuPy, the exporter's
stream, else Numba's default) and the loss comes back as a device array.

This module is pure Python; Numba is imported on the first call.
"""

from __future__ import annotations

import importlib

import numpy as np

from fastloss import _cuda, _cuda_rows
from fastloss._intake import compute_dtype

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)


def _specs():
    """The declarations (:mod:`fastloss.kernels.softmax`)."""
    return importlib.import_module("fastloss.kernels.softmax")


def run(call, input: object, target: object, weight: object = None, out: object = None):
    """The device plan of ``call`` (a ``fastloss.softmax._Call``): ``(loss, z_loss, grad,
    None)``, device arrays (0-d, or per-row for ``"none"``; ``z_loss`` None without a z-loss
    output, ``grad`` None without ``return_grad``). ``target``: integer class indices of
    ``input``'s shape without the class axis or, for the cross-entropies, class probabilities
    of ``input``'s shape; ``out`` receives the gradient and may be ``input`` itself (written
    only after every class index is checked). Synchronises once (with class-index targets):
    see the module docstring."""
    keras = call.loss == "keras"
    if keras:
        ndim = len(input.shape)
        if call.axis not in (-1, ndim - 1):
            raise ValueError(
                f"axis: on a CUDA device only the last axis (-1 or {ndim - 1}) is supported, "
                f"got {call.axis}"
            )
        if call.sparse:
            t = _cuda._intake(target, "target")
            _refuse_float_labels(t)
            target = _labels(input, target, t)
    elif call.loss == "cross_entropy":
        if np.dtype(target.dtype).kind == "f" and tuple(target.shape) == tuple(input.shape):
            call.check_probabilities()
    rows = _layout(input, [(target, "target"), (weight, "weight"), (out, "out")], not keras)
    keras_kernel = call.kind(False).startswith("keras")  # Keras's clipped probabilities
    w, has_weight = (None, False) if keras_kernel else _weight(rows, weight)
    (target_out,) = _cuda._check_out(out, out is not None, [rows.shape], [rows.op.dtype])
    t = _cuda._intake(target, "target")
    probabilities = t.kind != "scalar" and t.dtype.kind == "f" and t.shape == rows.shape
    if probabilities and call.loss == "focal":
        raise ValueError(
            "softcap and focal loss: supported with class-index targets only, got class "
            "probabilities"
        )
    kind = call.kind(probabilities)
    count = total = weight_sum = masked = 0.0
    if kind in ("probs", "keras_dense"):
        if kind == "keras_dense" and (t.kind == "scalar" or t.shape != rows.shape):
            got = "a scalar" if t.kind == "scalar" else f"shape {t.shape}"
            raise ValueError(f"target: expected the shape of input {rows.shape}, got {got}")
        labels, _ = rows.like(t, rows.dtype)
        count = float(rows.rows)
    else:
        flat = _index_target(rows, target)
        weights = rows.plan.empty((1,), rows.dtype) if keras_kernel else w
        checked = _check_targets(rows, flat, weights, has_weight, call)
        labels, count, total, weight_sum, masked = checked
    z_count = count
    mean_over = call.mean_over(kind, rows.rows, masked)
    if mean_over is not None:
        denominator = mean_over
    else:
        denominator = total if has_weight else count
    if not has_weight:
        weight_sum = float(rows.classes)
    name, flags, params = call.declaration(
        kind, has_weight, weight_sum, rows.dtype, rows.shape, rows.classes
    )
    spec = getattr(_specs(), name)
    arrays = (rows.matrix, labels) if keras_kernel else (rows.matrix, labels, w)
    reduction = call.reduction
    grad = rows.grad_buffer(target_out, arrays[1:]) if call.return_grad else None
    scales = None
    if call.return_grad:
        scales = (_cuda_rows.scale(reduction, denominator), _cuda_rows.scale(reduction, z_count))
        scales = scales[: len(spec.scales)]
    grads = () if grad is None else (grad,)
    row_loss, *row_z = _cuda_rows.launch(rows.plan, spec, flags, arrays, params, scales, grads)
    z = None
    if row_z:
        split = kind == "index" and reduction == "mean" and call.z_scale != 0
        loss, z = _reduce_with_z(rows, row_loss, row_z[0], denominator, z_count, split, reduction)
    else:
        loss = rows.reduce(row_loss, reduction, denominator)
    return loss, z, (rows.finish_grad(grad, target_out) if call.return_grad else None), None


def _layout(input: object, others: list, torch_layout: bool) -> _cuda_rows.Rows:
    """``input`` checked and laid out as rows (:class:`fastloss._cuda_rows.Rows`: classes
    along dim 1 with ``torch_layout``, else along the last axis), on the plan of it and the
    ``(value, name)`` operands ``others``."""
    op = _cuda._intake(input, "input")
    if op.kind == "scalar":
        raise TypeError("input: expected a device array, got a scalar")
    if op.dtype.kind != "f":
        raise TypeError(f"input: expected a floating dtype, got {op.dtype}")
    if len(op.shape) == 0:
        raise ValueError("input: expected logits of shape (C,), (N, C) or (N, C, d1, ...)")
    dtype = compute_dtype(op.dtype, "input")
    ops = [op] + [_cuda._intake(v, name) for v, name in others if v is not None]
    rows = _cuda_rows.Rows(_cuda_rows.plan(ops), op, dtype, op.dtype, torch_layout)
    if rows.classes == 0 and rows.rows:
        raise ValueError(f"input: expected at least one class, got shape {op.shape}")
    return rows.lay_out()


def _operand(rows: _cuda_rows.Rows, value: object, name: str, shape: tuple, dtype: np.dtype):
    """``value`` (a device array of ``shape``) C-contiguous in ``dtype``, 1-D: a view where it
    is one already, else a device copy."""
    op = _cuda._intake(value, name)
    if op.kind == "scalar" or op.shape != shape:
        got = "a scalar" if op.kind == "scalar" else f"shape {op.shape}"
        raise ValueError(f"{name}: expected a device array of shape {shape}, got {got}")
    return _cuda_rows.flat(rows.plan, op, dtype)


def _weight(rows: _cuda_rows.Rows, weight: object):
    """The ``(C,)`` class weights in the compute dtype, and whether there are any (ones
    otherwise, as the CPU path passes)."""
    if weight is None:
        ones = rows.plan.empty((rows.classes,), rows.dtype)
        if rows.classes:
            rows.plan.launch(rows.plan.common.fill, rows.classes, 1, ones, rows.dtype.type(1))
        return ones, False
    w = _cuda._intake(weight, "weight")
    if w.dtype.kind not in "fiub":
        raise TypeError(f"weight: expected a real dtype, got {w.dtype}")
    if w.shape != (rows.classes,):
        raise ValueError(
            f"weight: expected a 1-D array of {rows.classes} class weights, got shape {w.shape}"
        )
    return _operand(rows, weight, "weight", (rows.classes,), rows.dtype), True


def _index_target(rows: _cuda_rows.Rows, target: object):
    """The class indices as a C-contiguous 1-D device array of the batch shape (any integer
    dtype): a view where it is one, else a copy in their own dtype."""
    t = _cuda._intake(target, "target")
    if t.kind == "scalar" or t.dtype.kind not in "iu":
        raise TypeError(
            "target: expected a device array of integer class indices (or, for "
            f"cross_entropy, class probabilities of input's shape {rows.shape}), got "
            f"{'a scalar' if t.kind == 'scalar' else f'dtype {t.dtype}, shape {t.shape}'}"
        )
    if t.shape != rows.batch_shape:
        raise ValueError(
            f"target: expected class indices of shape {rows.batch_shape} for input of "
            f"shape {rows.shape}, got shape {t.shape}"
        )
    return _operand(rows, target, "target", rows.batch_shape, t.dtype)


def _check_targets(rows: _cuda_rows.Rows, flat, weight, has_weight: bool, call):
    """The pre-pass over the class indices ``flat``: raises IndexError for an index outside
    [0, C) that is not skipped (``call.mask_label``, and ``call.skip`` beside it: Keras's -100
    beside its ``ignore_class``; ``call.skipped`` names them in the error), else returns
    ``(indices, count, total, weight_sum, masked)``: the indices as int64 for the row kernels,
    which skip ``call.skip`` (a view where they are int64 already and nothing is rewritten),
    the count of the rows not skipped, the sum of their classes' weights and of the class
    weights, the count of the ``mask_label`` rows (host floats, from the call's one
    synchronisation)."""
    label, also = call.mask_label, call.skip
    copy = flat.dtype != I64 or also != label
    indices = rows.plan.empty((rows.rows,), I64) if copy else flat
    if not rows.rows:
        return indices, 0.0, 0.0, 0.0, 0.0
    k = _cuda_rows.softmax_kernels()
    info = rows.plan.empty((k.VERDICT,), F64)
    unsigned = flat.dtype == np.uint64
    k.check_targets[1, k.threads, rows.plan.stream](
        flat, np.int64(rows.classes), np.int64(label), np.int64(also), unsigned, weight,
        has_weight, copy, indices, info,
    )  # fmt: skip
    verdict = _to_host(rows.plan, info)  # the synchronisation
    bad = int(verdict[k.BAD])
    if bad >= 0:
        value = int(verdict[k.HIGH]) * 2**32 + int(verdict[k.LOW])
        value = value % 2**64 if unsigned else value
        where = np.unravel_index(bad, rows.batch_shape) if rows.batch_shape else ()
        raise IndexError(
            f"target: class index {value} at position {tuple(int(i) for i in where)} "
            f"is out of range [0, {rows.classes}) and is not "
            f"{call.skipped or f'ignore_index ({label})'}"
        )
    entries = (k.COUNT, k.TOTAL, k.WEIGHT_SUM, k.MASKED)
    return (indices, *(float(verdict[j]) for j in entries))


def _to_host(plan: _cuda._Plan, array) -> np.ndarray:
    if plan.cupy_results:
        return np.asarray(array.get())
    host = array.copy_to_host(stream=plan.stream)
    if plan.stream:
        plan.stream.synchronize()
    return np.asarray(host)


def _reduce_with_z(rows, row_loss, row_z, denominator, z_denominator, split, reduction):
    """The loss (whose rows hold their z-loss) and the z-loss, reduced as the CPU reduces
    them: with ``split`` (a mean with a z-loss) the two means apart, then added."""
    if reduction == "none":
        return rows.reduce(row_loss, "none", 1.0), rows.reduce(row_z, "none", 1.0)
    mean = reduction == "mean"
    loss = rows.plan.empty((), rows.dtype)
    z = rows.plan.empty((), rows.dtype)
    k = _cuda_rows.softmax_kernels()
    k.finalize[1, k.threads, rows.plan.stream](
        row_loss, row_z, bool(split), np.float64(denominator if mean else 1.0),
        np.float64(z_denominator if mean else 1.0), loss, z,
    )  # fmt: skip
    return loss, z


# --- Keras's sparse labels ------------------------------------------------------------------


def _refuse_float_labels(t: _cuda._Operand) -> None:
    if t.kind != "scalar" and t.dtype.kind == "f":
        raise TypeError(
            "target: float class labels are not supported on a CUDA device; cast them to an "
            "integer dtype"
        )


def _labels(input: object, target: object, t: _cuda._Operand):
    """Keras's sparse labels without their trailing axis of size 1 (``(N, 1)`` labels): a
    view of the batch shape."""
    ndim = len(tuple(input.shape))
    if t.kind == "scalar" or len(t.shape) != ndim or not t.shape or t.shape[-1] != 1:
        return target
    if t.contiguous("C"):
        return t.value.reshape(t.shape[:-1])
    return t.value[(slice(None),) * (ndim - 1) + (0,)]
