"""Device path of the softmax family: cross-entropy, NLL, focal loss and Keras's cross-entropies
on a CUDA device.

The twins of :func:`fastloss.softmax.cross_entropy`, :func:`~fastloss.softmax.nll_loss`,
:func:`~fastloss.softmax.focal_loss` and Keras's three cross-entropies for arrays that live on
a CUDA device (CuPy, Numba device arrays, the simulator's included, anything with
``__cuda_array_interface__``). Each call resolves its options into the CPU front end's
declaration (a :class:`~fastloss.kernels.rows.RowSpec` of :mod:`fastloss.kernels.softmax`), its
flags, params and gradient scales, and launches the kernels that
:mod:`fastloss.kernels.cuda.rows` generates from it (a block per row,
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
import math

import numpy as np

from fastloss import _cuda, _cuda_rows
from fastloss._intake import compute_dtype

CROSS_ENTROPY = 0
FOCAL = 1
KERAS_CROSSENTROPY = 0  # fastloss.softmax._KERAS_CROSSENTROPY
KERAS_FOCAL = 1  # fastloss.softmax._KERAS_FOCAL

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)


def _specs():
    """The declarations (:mod:`fastloss.kernels.softmax`)."""
    return importlib.import_module("fastloss.kernels.softmax")


def _kernels():
    """The check, layout and reduction kernels (:mod:`fastloss.kernels.cuda.softmax`)."""
    return importlib.import_module("fastloss.kernels.cuda.softmax").kernels()


def _scale(reduction: str, denominator: float) -> float:
    """The gradient's factor ``1 / denominator`` of a mean (inf for 0, as the CPU), else 1."""
    if reduction != "mean":
        return 1.0
    return 1.0 / denominator if denominator else math.inf


def _overlaps(span: tuple[int, int], others: list) -> bool:
    lo, hi = span
    return any(lo < b and a < hi for a, b in others)


def _spans(arrays) -> list[tuple[int, int]]:
    return [_cuda._span(a.reshape((a.size,))) for a in arrays if a.size]


class _Rows:
    """``input`` on the device as a C-contiguous ``(rows, C)`` matrix of the compute dtype,
    the plan of the call (array library, stream), and the way back to ``input``'s layout."""

    def __init__(self, input: object, others: list, torch_layout: bool = True):
        op = _cuda._intake(input, "input")
        if op.kind == "scalar":
            raise TypeError("input: expected a device array, got a scalar")
        if op.dtype.kind != "f":
            raise TypeError(f"input: expected a floating dtype, got {op.dtype}")
        shape = op.shape
        if len(shape) == 0:
            raise ValueError("input: expected logits of shape (C,), (N, C) or (N, C, d1, ...)")
        self.op = op
        self.shape = shape
        self.dtype = compute_dtype(op.dtype, "input")
        if torch_layout and len(shape) > 1:  # classes along dim 1, as torch
            self.batch_shape = (shape[0], *shape[2:])
            self.classes = shape[1]
            self.cube = (shape[0], self.classes, math.prod(shape[2:]))
        else:  # classes along the last axis
            self.batch_shape = shape[:-1]
            self.classes = shape[-1]
            self.cube = (math.prod(self.batch_shape), self.classes, 1)
        self.rows = math.prod(self.batch_shape)
        if self.classes == 0 and self.rows:
            raise ValueError(f"input: expected at least one class, got shape {shape}")
        # with torch's trailing dimensions a row is a position (n, :, j): the classes move last
        self.moved = self.cube[2] != 1
        ops = [op] + [_cuda._intake(v, name) for v, name in others if v is not None]
        self.plan = _cuda._Plan(op.kind == "cupy", _cuda._launch_stream(ops))
        self.k = _kernels()
        self.matrix, self.copied = self.like(op, self.dtype)

    @property
    def matrix_shape(self) -> tuple[int, int]:
        return (self.rows, self.classes)

    def like(self, op: _cuda._Operand, dtype: np.dtype):
        """``op`` (of ``input``'s shape) laid out as the rows, in ``dtype``: ``(matrix,
        copied)``, a view where it is one already."""
        plan = self.plan
        if not self.moved:
            if op.dtype == dtype and op.contiguous("C"):
                return op.value.reshape(self.matrix_shape), False
            return plan.materialise(op, self.shape, dtype).reshape(self.matrix_shape), True
        if op.contiguous("C"):
            cube = op.value.reshape(self.cube)
        else:
            cube = plan.materialise(op, self.shape, dtype).reshape(self.cube)
        n, c, d = self.cube
        moved = plan.empty((n, d, c), dtype)
        self._swap(cube, moved)  # cast on the way when op is not of dtype
        return moved.reshape(self.matrix_shape), True

    def _swap(self, src, dst) -> None:
        size = math.prod(dst.shape)
        if size:
            blocks = -(-size // self.k.threads)
            self.k.swap_last[blocks, self.k.threads, self.plan.stream](src, dst)

    def operand(self, value: object, name: str, shape: tuple, dtype: np.dtype):
        """``value`` (a device array of ``shape``) C-contiguous in ``dtype``, 1-D: a view
        where it is one already, else a device copy."""
        op = _cuda._intake(value, name)
        if op.kind == "scalar" or op.shape != shape:
            got = "a scalar" if op.kind == "scalar" else f"shape {op.shape}"
            raise ValueError(f"{name}: expected a device array of shape {shape}, got {got}")
        n = math.prod(shape)
        if op.dtype == dtype and op.contiguous("C"):
            return op.value.reshape((n,))
        return self.plan.materialise(op, shape, dtype)

    def weight(self, weight: object):
        """The ``(C,)`` class weights in the compute dtype, and whether there are any (ones
        otherwise, as the CPU path passes)."""
        if weight is None:
            ones = self.plan.empty((self.classes,), self.dtype)
            if self.classes:
                self.plan.launch(self.plan.common.fill, self.classes, 1, ones, self.dtype.type(1))
            return ones, False
        w = _cuda._intake(weight, "weight")
        if w.dtype.kind not in "fiub":
            raise TypeError(f"weight: expected a real dtype, got {w.dtype}")
        if w.shape != (self.classes,):
            raise ValueError(
                f"weight: expected a 1-D array of {self.classes} class weights, got shape {w.shape}"
            )
        return self.operand(weight, "weight", (self.classes,), self.dtype), True

    def out(self, out: object):
        """The caller's ``out``, checked (input's shape and dtype), as an operand or None."""
        (target,) = _cuda._check_out(out, out is not None, [self.shape], [self.op.dtype])
        return target

    def grad_buffer(self, target, operands: list):
        """The ``(rows, C)`` matrix the kernel writes the gradient into: ``out`` itself where
        it is laid out as the rows in the compute dtype and is the logits' memory exactly or
        overlaps no operand, else the logits' private copy (written in place), else a new
        one."""
        if target is not None and not self.moved and self.rows and self.classes:
            if target.dtype == self.dtype and target.contiguous("C"):
                buffer = target.value.reshape(self.matrix_shape)
                span = _cuda._span(buffer.reshape((buffer.size,)))
                mine = _cuda._span(self.matrix.reshape((self.matrix.size,)))
                if span == mine or not _overlaps(span, _spans([self.matrix, *operands])):
                    return buffer
        if self.copied:
            return self.matrix
        return self.plan.empty(self.matrix_shape, self.dtype)

    def finish_grad(self, buffer, target):
        """The gradient in ``input``'s layout and dtype: in ``out`` (written now where the
        kernel could not write it) or a new array (the buffer itself where it can be)."""
        plan = self.plan
        grad_dtype = self.op.dtype
        if self.moved:
            n, c, d = self.cube
            direct = target is not None and target.contiguous("C")
            result = target.value if direct else plan.empty(self.shape, grad_dtype)
            self._swap(buffer.reshape((n, d, c)), result.reshape(self.cube))
            if target is not None and not direct:
                plan.copy(result, target.value)
                return target.value
            return result
        if target is None:
            if grad_dtype != self.dtype:  # float16 input: the gradient in float16
                return plan.store(buffer, self.shape, "C", None, grad_dtype)
            return buffer.reshape(self.shape)
        flat = buffer.reshape((buffer.size,))
        if not (
            target.contiguous("C")
            and _cuda._span(flat) == _cuda._span(target.value.reshape((flat.size,)))
        ):
            plan.copy(buffer.reshape(self.shape), target.value)
        return target.value

    def index_target(self, target: object, shape: tuple | None = None):
        """The class indices as a C-contiguous 1-D device array (any integer dtype): a view
        where it is one, else a copy in their own dtype; ``shape``: the shape expected
        (default the batch shape)."""
        shape = self.batch_shape if shape is None else shape
        t = _cuda._intake(target, "target")
        if t.kind == "scalar" or t.dtype.kind not in "iu":
            raise TypeError(
                "target: expected a device array of integer class indices (or, for "
                f"cross_entropy, class probabilities of input's shape {self.shape}), got "
                f"{'a scalar' if t.kind == 'scalar' else f'dtype {t.dtype}, shape {t.shape}'}"
            )
        if t.shape != shape:
            raise ValueError(
                f"target: expected class indices of shape {self.batch_shape} for input of "
                f"shape {self.shape}, got shape {t.shape}"
            )
        return self.operand(target, "target", shape, t.dtype)

    def check_targets(self, flat, weight, has_weight, ignore_index, also=None, skipped=None):
        """The pre-pass over the class indices ``flat``: raises IndexError for an index
        outside [0, C) that is not skipped (``ignore_index``, and ``also`` beside it: Keras's
        -100 beside its ``ignore_class``; ``skipped`` names them in the error), else returns
        ``(indices, count, total, weight_sum, masked)``: the indices as int64 for the row
        kernels, which skip ``also`` (a view where they are int64 already and nothing is
        rewritten), the count of the rows not skipped, the sum of their classes' weights and
        of the class weights, the count of the ``ignore_index`` rows (host floats, from the
        call's one synchronisation)."""
        also = ignore_index if also is None else also
        copy = flat.dtype != I64 or also != ignore_index
        indices = self.plan.empty((self.rows,), I64) if copy else flat
        if not self.rows:
            return indices, 0.0, 0.0, 0.0, 0.0
        k = self.k
        info = self.plan.empty((k.VERDICT,), F64)
        unsigned = flat.dtype == np.uint64
        k.check_targets[1, k.threads, self.plan.stream](
            flat, np.int64(self.classes), np.int64(ignore_index), np.int64(also), unsigned,
            weight, has_weight, copy, indices, info,
        )  # fmt: skip
        verdict = self._to_host(info)  # the synchronisation
        bad = int(verdict[k.BAD])
        if bad >= 0:
            value = int(verdict[k.HIGH]) * 2**32 + int(verdict[k.LOW])
            value = value % 2**64 if unsigned else value
            where = np.unravel_index(bad, self.batch_shape) if self.batch_shape else ()
            raise IndexError(
                f"target: class index {value} at position {tuple(int(i) for i in where)} "
                f"is out of range [0, {self.classes}) and is not "
                f"{skipped or f'ignore_index ({ignore_index})'}"
            )
        entries = (k.COUNT, k.TOTAL, k.WEIGHT_SUM, k.MASKED)
        return (indices, *(float(verdict[j]) for j in entries))

    def _to_host(self, array) -> np.ndarray:
        if self.plan.cupy_results:
            return np.asarray(array.get())
        stream = self.plan.stream
        host = array.copy_to_host(stream=stream)
        if stream:
            stream.synchronize()
        return np.asarray(host)

    def launch(self, name: str, flags: tuple, arrays: tuple, params: tuple, scales, grad):
        """The per-row float64 outputs of the declaration ``name``, the gradient into
        ``grad`` when ``scales`` are given."""
        spec = getattr(_specs(), name)
        grads = () if grad is None else (grad,)
        return _cuda_rows.launch(self.plan, spec, flags, arrays, params, scales, grads)

    def reduce(self, row_loss, reduction: str, denominator: float):
        """One per-row output reduced: a 0-d device array of the compute dtype, or the rows
        for ``"none"``."""
        plan = self.plan
        if reduction == "none":
            return plan.store(row_loss, self.batch_shape, "C", None, self.dtype)
        value = plan.empty((), self.dtype)
        den = denominator if reduction == "mean" else 1.0
        plan.common.finalize[1, plan.threads, plan.stream](
            row_loss, self.rows, np.float64(den), value
        )
        return value

    def reduce_with_z(self, row_loss, row_z, reduction, denominator, z_denominator, split):
        """The loss (whose rows hold their z-loss) and the z-loss, reduced as the CPU reduces
        them: with ``split`` (a mean with a z-loss) the two means apart, then added."""
        if reduction == "none":
            return self.reduce(row_loss, "none", 1.0), self.reduce(row_z, "none", 1.0)
        mean = reduction == "mean"
        loss = self.plan.empty((), self.dtype)
        z = self.plan.empty((), self.dtype)
        self.k.finalize[1, self.k.threads, self.plan.stream](
            row_loss,
            row_z,
            bool(split),
            np.float64(denominator if mean else 1.0),
            np.float64(z_denominator if mean else 1.0),
            loss,
            z,
        )
        return loss, z


def cross_entropy(
    input: object,
    target: object,
    weight: object = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    smoothing: float = 0.0,
    softcap: float = 0.0,
    z_scale: float = 0.0,
    alpha: float = 1.0,
    gamma: float = 0.0,
    mode: int = CROSS_ENTROPY,
    return_grad: bool = False,
    out: object = None,
    *,
    mean_over: float | None = None,
    masked_mean: bool = False,
    skipped: str | None = None,
    torch_layout: bool = True,
):
    """Cross-entropy (``mode=CROSS_ENTROPY``) or focal loss (``mode=FOCAL``, with ``alpha``
    and ``gamma``) of device logits, as :func:`fastloss.softmax.cross_entropy` computes it.

    ``target``: integer class indices of ``input``'s shape without the class axis, or
    (cross-entropy only, without ``softcap``) class probabilities of ``input``'s shape.
    ``softcap``: 0 for none. ``mean_over``: the denominator of ``"mean"`` instead of the
    (weighted) count of rows not ignored (Keras's sparse cross-entropy); ``masked_mean``:
    Keras's ``ignore_class``: the rows of ``ignore_index`` are masked (out of the mean, a mean
    over none being 0), and label -100 is skipped too (a 0 counted in the mean, as Keras's
    torch backend gives); ``skipped`` names the labels skipped in the error.
    ``torch_layout``: classes along dim 1 (else along the last axis). ``out`` receives the
    gradient and may be ``input`` itself (written only after every class index is checked).

    Returns ``(loss, z_loss, grad)``: device arrays (0-d, or per-row for ``"none"``); grad None
    without ``return_grad``. Synchronises once (with class-index targets): see the module
    docstring.
    """
    rows = _Rows(input, [(target, "target"), (weight, "weight"), (out, "out")], torch_layout)
    w, has_weight = rows.weight(weight)
    target_out = rows.out(out)
    t = _cuda._intake(target, "target")
    if t.kind != "scalar" and t.dtype.kind == "f" and t.shape == rows.shape:
        if softcap or mode != CROSS_ENTROPY:
            raise ValueError(
                "softcap and focal loss: supported with class-index targets only, got class "
                "probabilities"
            )
        spread = smoothing / rows.classes if rows.classes else 0.0
        return _probabilities(rows, t, w, has_weight, smoothing, spread, z_scale, reduction,
                              return_grad, target_out)  # fmt: skip
    flat = rows.index_target(target)
    also = -100 if masked_mean else ignore_index
    checked = rows.check_targets(flat, w, has_weight, ignore_index, also, skipped)
    indices, count, total, weight_sum, masked = checked
    z_count = count
    if masked_mean:  # Keras: the rows not masked, none giving a mean of 0
        mean_over = rows.rows - masked if rows.rows - masked else math.inf
    if mean_over is not None:
        count, has_total = mean_over, False
    else:
        has_total = has_weight
    denominator = total if has_total else count
    if not has_weight:
        weight_sum = float(rows.classes)
    grad = rows.grad_buffer(target_out, [w, indices]) if return_grad else None
    scales = None
    if return_grad:
        scales = (_scale(reduction, denominator), _scale(reduction, z_count))
    row_loss, row_z = rows.launch(
        "CROSS_ENTROPY_SMOOTHED" if smoothing else "CROSS_ENTROPY",
        (has_weight, softcap > 0, z_scale != 0, mode == FOCAL),
        (rows.matrix, indices, w),
        (np.int64(also), weight_sum, smoothing, softcap, z_scale, alpha, gamma),
        scales,
        grad,
    )
    split = reduction == "mean" and z_scale != 0
    loss, z = rows.reduce_with_z(row_loss, row_z, reduction, denominator, z_count, split)
    return loss, z, (rows.finish_grad(grad, target_out) if return_grad else None)


def _probabilities(rows, t, w, has_weight, smoothing, spread, z_scale, reduction, return_grad,
                   target_out):  # fmt: skip
    """Cross-entropy against class probabilities of ``input``'s shape (the CPU's
    ``_prob_call``): ``(loss, z_loss, grad)``."""
    probs, _ = rows.like(t, rows.dtype)
    grad = rows.grad_buffer(target_out, [w, probs]) if return_grad else None
    count = float(rows.rows)
    scale = _scale(reduction, count)
    row_loss, row_z = rows.launch(
        "CROSS_ENTROPY_PROBS",
        (has_weight, z_scale != 0),
        (rows.matrix, probs, w),
        (1.0 - smoothing, spread, z_scale),
        (scale, scale) if return_grad else None,
        grad,
    )
    loss, z = rows.reduce_with_z(row_loss, row_z, reduction, count, count, False)
    return loss, z, (rows.finish_grad(grad, target_out) if return_grad else None)


def focal_loss(
    input: object,
    target: object,
    alpha: float = 1.0,
    gamma: float = 2.0,
    reduction: str = "mean",
    ignore_index: int = -100,
    return_grad: bool = False,
    out: object = None,
):
    """Multi-class focal loss of device logits, as :func:`fastloss.softmax.focal_loss`.
    Returns ``(loss, None, grad)``."""
    loss, _, grad = cross_entropy(
        input,
        target,
        None,
        ignore_index,
        reduction,
        alpha=alpha,
        gamma=gamma,
        mode=FOCAL,
        return_grad=return_grad,
        out=out,
    )
    return loss, None, grad


def nll_loss(
    input: object,
    target: object,
    weight: object = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_grad: bool = False,
    out: object = None,
):
    """Negative log-likelihood of device log-probabilities, as
    :func:`fastloss.softmax.nll_loss`. Returns ``(loss, grad)`` (grad None without
    ``return_grad``)."""
    rows = _Rows(input, [(target, "target"), (weight, "weight"), (out, "out")])
    w, has_weight = rows.weight(weight)
    target_out = rows.out(out)
    flat = rows.index_target(target)
    indices, count, total, _, _ = rows.check_targets(flat, w, has_weight, ignore_index)
    denominator = total if has_weight else count
    grad = rows.grad_buffer(target_out, [w, indices]) if return_grad else None
    scales = (_scale(reduction, denominator),) if return_grad else None
    (row_loss,) = rows.launch(
        "NLL", (has_weight,), (rows.matrix, indices, w), (np.int64(ignore_index),), scales, grad
    )
    loss = rows.reduce(row_loss, reduction, denominator)
    return loss, (rows.finish_grad(grad, target_out) if return_grad else None)


# --- Keras's semantics (classes along the last axis) ----------------------------------------


def keras(
    input: object,
    target: object,
    *,
    sparse: bool,
    from_logits: bool,
    mode: int,
    smoothing: float,
    alpha: float,
    gamma: float,
    ignore_class: int,
    masked: bool,
    reduction: str,
    return_grad: bool,
    out: object,
):
    """Keras's categorical (``sparse=False``, ``mode=KERAS_CROSSENTROPY``), sparse categorical
    (``sparse=True``) and categorical focal (``mode=KERAS_FOCAL``) cross-entropy of device
    predictions whose classes lie along the last axis, as :mod:`fastloss.softmax` computes
    them. ``ignore_class``: the sparse label skipped (-100 when Keras's is None); ``masked``:
    Keras's ``ignore_class`` is given: its rows leave the mean (0 when none are left), and
    label -100 still gives 0 (counted in the mean) as Keras's torch backend gives it; else
    every row counts. Returns ``(loss, grad)``: device arrays (``loss`` 0-d, or of
    ``input``'s shape without the last axis for ``"none"``), grad None without
    ``return_grad``."""
    skipped = "-100 (skipped as Keras's torch backend skips it)"
    if masked:
        skipped = f"ignore_class ({ignore_class})" + (" or -100" if ignore_class != -100 else "")
    if from_logits and mode == KERAS_CROSSENTROPY:  # log_softmax: the cross-entropies'
        t = _cuda._intake(target, "target")
        if sparse:
            _refuse_float_labels(t)
            loss, _, grad = cross_entropy(
                input,
                _labels(input, target, t),
                None,
                ignore_class,
                reduction,
                return_grad=return_grad,
                out=out,
                mean_over=None if masked else float(math.prod(tuple(input.shape)[:-1])),
                masked_mean=masked,
                skipped=skipped,
                torch_layout=False,
            )
        else:
            loss, _, grad = cross_entropy(
                input, target, None, -100, reduction, smoothing, return_grad=return_grad,
                out=out, torch_layout=False,
            )  # fmt: skip
        return loss, grad
    from fastloss.softmax import _keras_clip

    rows = _Rows(input, [(target, "target"), (out, "out")], torch_layout=False)
    target_out = rows.out(out)
    low, high = (float(v) for v in _keras_clip(rows.dtype, mode))
    if sparse:
        t = _cuda._intake(target, "target")
        _refuse_float_labels(t)
        flat = rows.index_target(_labels(input, target, t))
        unit = rows.plan.empty((1,), rows.dtype)
        also = -100 if masked else ignore_class
        checked = rows.check_targets(flat, unit, False, ignore_class, also, skipped)
        indices, masked_rows = checked[0], checked[4]
        kept = rows.rows - masked_rows if masked else rows.rows
        mean_over = float(kept) if kept or not masked else math.inf
        grad = rows.grad_buffer(target_out, [indices]) if return_grad else None
        scales = (_scale(reduction, mean_over),) if return_grad else None
        params = (low, high, np.int64(also))
        (row_loss,) = rows.launch("KERAS_SPARSE", (), (rows.matrix, indices), params, scales, grad)
    else:
        t = _cuda._intake(target, "target")
        if t.kind == "scalar" or t.shape != rows.shape:
            got = "a scalar" if t.kind == "scalar" else f"shape {t.shape}"
            raise ValueError(f"target: expected the shape of input {rows.shape}, got {got}")
        dense, _ = rows.like(t, rows.dtype)
        mean_over = float(rows.rows)
        grad = rows.grad_buffer(target_out, [dense]) if return_grad else None
        scales = (_scale(reduction, mean_over),) if return_grad else None
        spread = smoothing / rows.classes if rows.classes else 0.0
        params = (1.0 - smoothing, spread, alpha, gamma, low, high)
        name = "KERAS_FOCAL_LOGITS" if from_logits else "KERAS_PROBS"
        flags = (mode == KERAS_FOCAL,)
        (row_loss,) = rows.launch(name, flags, (rows.matrix, dense), params, scales, grad)
    loss = rows.reduce(row_loss, reduction, mean_over)
    return loss, (rows.finish_grad(grad, target_out) if return_grad else None)


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
