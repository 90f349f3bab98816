"""Device path of the softmax family: cross-entropy, NLL and focal loss on a CUDA device.

The twins of :func:`fastloss.softmax.cross_entropy`, :func:`~fastloss.softmax.nll_loss` and
:func:`~fastloss.softmax.focal_loss` for arrays that live on a CUDA device (CuPy, Numba device
arrays, the simulator's included, anything with ``__cuda_array_interface__``), launching the
row kernels of :mod:`fastloss.kernels.cuda.softmax` (one block per row). ``input`` is ``(C,)``,
``(N, C)`` or ``(N, C, d1, ..., dk)`` (torch's layout, seen by the kernels as ``(N, C, D)``
without a copy), float16/32/64 (float16 computes in float32, through a device copy);
class-index targets of any integer dtype, shape ``()``, ``(N,)`` or ``(N, d1, ..., dk)``; for
cross-entropy also class probabilities of ``input``'s shape. Arguments are expected already
validated by the public functions (reduction name, ``smoothing`` in [0, 1], ``softcap`` > 0
or 0 for none, ...).

Synchronisation: with class-index targets, one pre-pass kernel checks every index and counts the
rows (the denominator of ``"mean"`` stays on the device); its two-integer verdict is copied to
the host so that an out-of-range index raises :class:`IndexError` (with its value and position)
before any row is touched, ``input`` included when it is ``out``. That small device-to-host
copy is the only synchronisation of a call (uint64 indices take two: see
``_Call.check_targets``); everything else is queued on one stream (CuPy's
current stream when ``input`` is CuPy, the exporter's stream, else Numba's default) and the
loss comes back as a device array.

This module is pure Python; Numba is imported on the first call.
"""

from __future__ import annotations

import math

import numpy as np

from fastloss import _cuda
from fastloss._intake import compute_dtype

CROSS_ENTROPY = 0  # kernels.cuda.softmax.CROSS_ENTROPY
FOCAL = 1  # kernels.cuda.softmax.FOCAL


def _kernels():
    from fastloss.kernels.cuda import softmax

    return softmax.kernels()


class _Call:
    """Intake of one call: the rows matrix, the plan (allocation, stream), the gradient."""

    def __init__(self, input: object, others: list[tuple[object, str]]):
        op = _cuda._intake(input, "input")
        if op.kind == "scalar":
            raise TypeError("input: expected a device array, got a scalar")
        if op.dtype.kind != "f":
            raise TypeError(f"input: expected a floating dtype, got {op.dtype}")
        if len(op.shape) == 0:
            raise ValueError("input: expected logits of shape (C,), (N, C) or (N, C, d1, ...)")
        self.op = op
        self.shape = op.shape
        self.dtype = compute_dtype(op.dtype, "input")
        # torch's layout, classes along dim 1 (dim 0 of a 1-D input), seen as (N, C, D)
        if len(op.shape) == 1:
            self.batch_shape = ()
            self.classes = op.shape[0]
            self.cube_shape = (1, self.classes, 1)
        else:
            self.batch_shape = (op.shape[0], *op.shape[2:])
            self.classes = op.shape[1]
            self.cube_shape = (op.shape[0], self.classes, math.prod(op.shape[2:]))
        self.rows = math.prod(self.batch_shape)
        self.unsigned = False  # uint64 class indices (see check_targets)
        if self.classes == 0 and self.rows:
            raise ValueError(f"input: expected at least one class, got shape {op.shape}")
        ops = [op] + [_cuda._intake(v, name) for v, name in others if v is not None]
        self.plan = _cuda._Plan(op.kind == "cupy", _cuda._launch_stream(ops))
        self.k = _kernels()
        # the (N, C, D) logits: a view of the input, or a contiguous copy in the compute dtype
        if op.dtype == self.dtype and op.contiguous("C"):
            self.matrix = op.value.reshape(self.cube_shape)
            self.copied = False
        else:
            self.matrix = self.plan.empty(self.cube_shape, self.dtype)
            self.plan.copy(op.value, self.matrix.reshape(self.shape))
            self.copied = True

    def operand(self, value: object, name: str, shape: tuple, dtype: np.dtype):
        """``value`` as a C-contiguous device array of ``shape`` in ``dtype`` (a copy when it
        is not one already)."""
        op = _cuda._intake(value, name)
        if op.kind == "scalar" or op.shape != shape:
            got = "a scalar" if op.kind == "scalar" else f"shape {op.shape}"
            raise ValueError(f"{name}: expected a device array of shape {shape}, got {got}")
        if op.dtype == dtype and op.contiguous("C"):
            return op.value
        result = self.plan.empty(shape, dtype)
        self.plan.copy(op.value, result)
        return result

    def weight(self, weight: object):
        if weight is None:
            return self.plan.empty((1,), self.dtype), False
        w = _cuda._intake(weight, "weight")
        if w.dtype.kind not in "fiub":
            raise TypeError(f"weight: expected a real dtype, got {w.dtype}")
        if w.shape != (self.classes,):
            raise ValueError(
                f"weight: expected a 1-D array of {self.classes} class weights, got shape {w.shape}"
            )
        return self.operand(weight, "weight", (self.classes,), self.dtype), True

    def index_target(self, target: object):
        t = _cuda._intake(target, "target")
        if t.kind == "scalar" or t.dtype.kind not in "iu":
            raise TypeError(
                "target: expected a device array of integer class indices (or, for "
                f"cross_entropy, class probabilities of input's shape {self.shape}), got "
                f"{'a scalar' if t.kind == 'scalar' else f'dtype {t.dtype}, shape {t.shape}'}"
            )
        if t.shape != self.batch_shape:
            raise ValueError(
                f"target: expected class indices of shape {self.batch_shape} for input of "
                f"shape {self.shape}, got shape {t.shape}"
            )
        self.unsigned = t.dtype == np.uint64
        if t.contiguous("C"):
            return t.value.reshape((self.rows,))
        flat = self.plan.empty(self.batch_shape, np.dtype(np.uint64 if self.unsigned else np.int64))
        self.plan.copy(t.value, flat)
        return flat.reshape((self.rows,))

    def grad_buffer(self, return_grad: bool, out: object, avoid: object = None):
        """``(buffer the kernel writes, out operand or None)``; the buffer is ``out`` itself
        when it can be (C-contiguous, compute dtype, same memory as the logits or disjoint
        from them and from ``avoid``), the logits' own copy when they were copied."""
        if not return_grad:
            return self.plan.empty((1, 1, 1), self.dtype), None
        target = None
        if out is not None:
            target = _cuda._intake(out, "out")
            if target.kind == "scalar":
                raise TypeError(f"out: expected a device array, got {type(out).__name__}")
            if target.shape != self.shape:
                raise ValueError(f"out: expected shape {self.shape}, got {target.shape}")
            if target.dtype != self.op.dtype:
                raise ValueError(f"out: expected dtype {self.op.dtype}, got {target.dtype}")
            if target.dtype == self.dtype and target.contiguous("C"):
                buffer = target.value.reshape(self.cube_shape)
                span = _cuda._span(buffer.reshape((buffer.size,)))
                mine = _cuda._span(self.matrix.reshape((self.matrix.size,)))
                if span == mine or (self.rows and not _overlap(span, mine, avoid)):
                    return buffer, target
        if self.copied:
            return self.matrix, target  # the logits' private copy: written in place
        return self.plan.empty(self.cube_shape, self.dtype), target

    def launch_rows(self, kernel, *args) -> None:
        if self.rows:
            kernel[self.rows, self.k.threads, self.plan.stream](*args)

    def single(self, kernel, *args) -> None:
        kernel[1, self.k.threads, self.plan.stream](*args)

    def check_targets(self, flat, weight, has_weight, ignore_index, reduction, mean_over):
        """The pre-pass: denominators into a new ``norm`` device array (returned); raises
        IndexError for an index outside [0, C) that is not ``ignore_index``.

        The kernels read an index as int64, so a uint64 index beyond int64 reads as a negative
        one, which may be a negative ``ignore_index`` (2**64 - 100 is -100): no uint64 index is
        that ``ignore_index``, so uint64 indices are checked a second time against a
        non-negative one (``C``, refused by the first check), a second synchronisation."""
        norm = self.plan.empty((3,), np.dtype(np.float64))
        info = self.plan.empty((2,), np.dtype(np.int64))
        over = -1.0 if mean_over is None else float(mean_over)
        checks = [ignore_index]
        if self.unsigned and ignore_index < 0:
            checks.append(self.classes)
        for ignored in checks:
            self.single(
                self.k.check_targets,
                flat,
                np.int64(self.classes),
                np.int64(ignored),
                weight,
                has_weight,
                reduction == "mean",
                np.float64(over),
                info,
                norm if ignored == ignore_index else self.plan.empty((3,), np.dtype(np.float64)),
            )
            bad, value = (int(v) for v in self._to_host(info))  # a synchronisation
            if bad >= 0:
                value = value % 2**64 if self.unsigned else value
                where = np.unravel_index(bad, self.batch_shape) if self.batch_shape else ()
                raise IndexError(
                    f"target: class index {value} at position {tuple(int(i) for i in where)} "
                    f"is out of range [0, {self.classes}) and is not ignore_index "
                    f"({ignore_index})"
                )
        return norm

    def _to_host(self, array) -> np.ndarray:
        if self.plan.cupy_results:
            return array.get()
        stream = self.plan.stream
        host = array.copy_to_host(stream=stream)
        if stream:
            stream.synchronize()
        return np.asarray(host)

    def reduce(self, row_ce, row_z, has_z: bool, norm, reduction: str):
        """The loss and z-loss: 0-d device arrays, or per-row arrays for ``"none"``."""
        if reduction == "none":
            loss = self.plan.empty((self.rows,), self.dtype)
            z = self.plan.empty((self.rows,), self.dtype)
            if self.rows:
                blocks = -(-self.rows // self.k.threads)
                self.k.rows_out[blocks, self.k.threads, self.plan.stream](
                    row_ce, row_z, has_z, loss, z
                )
            return loss.reshape(self.batch_shape), z.reshape(self.batch_shape)
        loss = self.plan.empty((), self.dtype)
        z = self.plan.empty((), self.dtype)
        self.single(self.k.finalize, row_ce, row_z, has_z, norm, loss, z)
        return loss, z

    def finish_grad(self, buffer, target):
        """The gradient in ``input``'s shape: ``out`` (written now if the kernel could not
        write it directly) or the buffer."""
        if target is None:
            if self.dtype != self.op.dtype:  # float16 input: gradient in float16
                result = self.plan.empty(self.shape, self.op.dtype)
                self.plan.copy(buffer.reshape(self.shape), result)
                return result
            return buffer.reshape(self.shape)
        if _cuda._span(buffer.reshape((buffer.size,))) != _cuda._span(
            target.value.reshape((target.value.size,))
        ) or not target.contiguous("C"):
            self.plan.copy(buffer.reshape(self.shape), target.value)
        return target.value


def _overlap(span: tuple[int, int], mine: tuple[int, int], avoid: object) -> bool:
    """Whether ``span`` overlaps the logits' memory ``mine`` or that of ``avoid``."""
    spans = [mine]
    if avoid is not None:
        spans.append(_cuda._span(avoid.reshape((avoid.size,))))
    lo, hi = span
    return any(lo < b and a < hi for a, b in spans)


def _row_buffers(call: _Call):
    f64 = np.dtype(np.float64)
    return call.plan.empty((call.rows,), f64), call.plan.empty((call.rows,), f64)


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
):
    """Cross-entropy (``mode=CROSS_ENTROPY``) or focal loss (``mode=FOCAL``, with ``alpha``
    and ``gamma``) of device logits, as :func:`fastloss.softmax.cross_entropy` computes it.

    ``target``: integer class indices of ``input``'s shape without dim 1, or (cross-entropy only,
    without ``softcap``/``z_scale``) class probabilities of ``input``'s shape. ``softcap``: 0
    for none. ``mean_over``: the denominator of ``"mean"`` instead of the (weighted) count of
    rows not ignored (Keras's sparse cross-entropy). ``masked_mean``: a zero denominator of
    ``"mean"`` (every row ignored) gives a mean of 0 (Keras's masked mean). ``out`` receives
    the gradient and may be ``input`` itself (written only after every class index is
    checked).

    Returns ``(loss, z_loss, grad)``: device arrays (0-d, or per-row for ``"none"``); z_loss is
    None for probability targets, grad None without ``return_grad``. Synchronises once (with
    class-index targets): see the module docstring.
    """
    call = _Call(input, [(target, "target"), (weight, "weight"), (out, "out")])
    dtype = call.dtype
    w, has_weight = call.weight(weight)
    t = _cuda._intake(target, "target")
    if t.dtype.kind == "f" and t.shape == call.shape:
        if softcap or z_scale or mode != CROSS_ENTROPY:
            raise ValueError(
                "softcap, z_loss_scale and focal loss: supported with class-index targets "
                "only, got class probabilities"
            )
        probs = call.operand(target, "target", call.shape, dtype).reshape(call.cube_shape)
        grad, target_out = call.grad_buffer(return_grad, out, avoid=probs)
        norm = call.plan.empty((3,), np.dtype(np.float64))
        denominator = float(call.rows) if reduction == "mean" else 1.0
        call.single(
            call.k.set_norm, norm, np.float64(denominator), np.float64(1.0), np.float64(0.0)
        )
        row_ce, row_z = _row_buffers(call)
        call.launch_rows(
            call.k.prob_rows,
            call.matrix,
            probs,
            w,
            has_weight,
            dtype.type(smoothing),
            norm,
            bool(return_grad),
            grad,
            row_ce,
        )
        loss, _ = call.reduce(row_ce, row_z, False, norm, reduction)
        return loss, None, (call.finish_grad(grad, target_out) if return_grad else None)
    flat = call.index_target(target)
    norm = call.check_targets(flat, w, has_weight, ignore_index, reduction, mean_over)
    if masked_mean and reduction == "mean":
        call.single(call.k.masked_norm, norm)
    grad, target_out = call.grad_buffer(return_grad, out)
    row_ce, row_z = _row_buffers(call)
    call.launch_rows(
        call.k.index_rows,
        call.matrix,
        flat,
        w,
        has_weight,
        np.int64(ignore_index),
        dtype.type(smoothing),
        dtype.type(softcap),
        dtype.type(z_scale),
        dtype.type(alpha),
        dtype.type(gamma),
        np.int64(mode),
        norm,
        bool(return_grad),
        grad,
        row_ce,
        row_z,
    )
    loss, z = call.reduce(row_ce, row_z, True, norm, reduction)
    return loss, z, (call.finish_grad(grad, target_out) if return_grad else None)


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
    call = _Call(input, [(target, "target"), (weight, "weight"), (out, "out")])
    w, has_weight = call.weight(weight)
    flat = call.index_target(target)
    norm = call.check_targets(flat, w, has_weight, ignore_index, reduction, None)
    grad, target_out = call.grad_buffer(return_grad, out)
    row_ce, row_z = _row_buffers(call)
    call.launch_rows(
        call.k.nll_rows,
        call.matrix,
        flat,
        w,
        has_weight,
        np.int64(ignore_index),
        call.dtype.type(1),
        norm,
        bool(return_grad),
        grad,
        row_ce,
    )
    loss, _ = call.reduce(row_ce, row_z, False, norm, reduction)
    return loss, (call.finish_grad(grad, target_out) if return_grad else None)


# --- Keras's semantics (classes along the last axis) ----------------------------------------

KERAS_CROSSENTROPY = 0  # kernels.cuda.softmax.KERAS_CROSSENTROPY
KERAS_FOCAL = 1  # kernels.cuda.softmax.KERAS_FOCAL


def _rows_view(value: object, name: str, shape: tuple):
    """``value`` as a device array of ``shape``: a view when it is C-contiguous, else a
    contiguous copy (on the exporter's stream)."""
    op = _cuda._intake(value, name)
    if op.shape == shape:
        return op.value
    if op.contiguous("C"):
        return op.value.reshape(shape)
    plan = _cuda._Plan(op.kind == "cupy", _cuda._launch_stream([op]))
    copy = plan.empty(op.shape, op.dtype)
    plan.copy(op.value, copy)
    return copy.reshape(shape)


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
    the mean is over the rows not skipped (Keras's ``ignore_class``), 0 when there are none,
    else over every row. ``input`` of 3 or more dimensions is seen as ``(rows, C)``: a view
    when it is C-contiguous, else a device copy. Returns ``(loss, grad)``: device arrays
    (``loss`` 0-d, or of ``input``'s shape without the last axis for ``"none"``), grad None
    without ``return_grad``."""
    op = _cuda._intake(input, "input")
    if op.kind == "scalar":
        raise TypeError("input: expected a device array, got a scalar")
    shape = op.shape
    if len(shape) == 0:
        raise ValueError("input: expected predictions of shape (C,) or (..., C)")
    batch = shape[:-1]
    classes = shape[-1]
    rows = math.prod(batch)
    two_d = (rows, classes) if len(shape) >= 3 else shape
    x = _rows_view(input, "input", two_d)
    t = _cuda._intake(target, "target")
    if sparse:
        if t.kind != "scalar" and t.dtype.kind == "f":
            raise TypeError(
                "target: float class labels are not supported on a CUDA device; cast them to "
                "an integer dtype"
            )
        t_shape = () if t.kind == "scalar" else t.shape
        if len(t_shape) == len(shape) and t_shape[-1] == 1:
            t_shape = t_shape[:-1]  # Keras accepts (N, 1) labels
        if t.kind != "scalar" and t_shape == batch:
            target = _rows_view(target, "target", two_d[:-1])
    elif t.kind != "scalar" and t.shape == shape:
        target = _rows_view(target, "target", two_d)
    late = None  # an out that is not laid out as the rows: written at the end
    o = None
    if out is not None:
        out_op = _cuda._intake(out, "out")
        if out_op.kind == "scalar":
            raise TypeError(f"out: expected a device array, got {type(out).__name__}")
        if out_op.shape != shape:
            raise ValueError(f"out: expected shape {shape}, got {out_op.shape}")
        if out_op.dtype != op.dtype:
            raise ValueError(f"out: expected dtype {op.dtype}, got {out_op.dtype}")
        if two_d == shape or out_op.contiguous("C"):
            o = out_op.value.reshape(two_d)
        else:
            late = out_op
    if from_logits and mode == KERAS_CROSSENTROPY:
        if sparse:
            loss, _, grad = cross_entropy(
                x,
                target,
                None,
                ignore_class,
                reduction,
                return_grad=return_grad,
                out=o,
                mean_over=None if masked else float(rows),
                masked_mean=masked,
            )
        else:
            loss, _, grad = cross_entropy(
                x, target, None, -100, reduction, smoothing, return_grad=return_grad, out=o
            )
    else:
        loss, grad = _keras_rows(
            x,
            target,
            sparse=sparse,
            from_logits=from_logits,
            mode=mode,
            smoothing=smoothing,
            alpha=alpha,
            gamma=gamma,
            ignore_class=ignore_class,
            masked=masked,
            reduction=reduction,
            return_grad=return_grad,
            out=o,
        )
    if reduction == "none":
        loss = loss.reshape(batch)
    if grad is not None:
        if late is not None:
            plan = _cuda._Plan(late.kind == "cupy", _cuda._launch_stream([late]))
            plan.copy(grad.reshape(shape), late.value)
            grad = late.value
        elif out is not None:
            grad = _cuda._intake(out, "out").value
        else:
            grad = grad.reshape(shape)
    return loss, grad


def _keras_rows(
    x,
    target,
    *,
    sparse,
    from_logits,
    mode,
    smoothing,
    alpha,
    gamma,
    ignore_class,
    masked,
    reduction,
    return_grad,
    out,
):
    """The ``keras_rows`` kernel over ``x`` of shape ``(C,)`` or ``(N, C)``."""
    from fastloss.softmax import _keras_clip

    call = _Call(x, [(target, "target"), (out, "out")])
    dtype = call.dtype
    scalar = dtype.type
    if sparse:
        flat = call.index_target(target)
        unit = call.plan.empty((1,), dtype)
        over = None if masked else float(call.rows)
        norm = call.check_targets(flat, unit, False, ignore_class, reduction, over)
        if masked and reduction == "mean":
            call.single(call.k.masked_norm, norm)
        dense = call.plan.empty((1, 1, 1), dtype)
        grad, target_out = call.grad_buffer(return_grad, out)
    else:
        dense = call.operand(target, "target", call.shape, dtype).reshape(call.cube_shape)
        flat = call.plan.empty((1,), np.dtype(np.int64))
        norm = call.plan.empty((3,), np.dtype(np.float64))
        denominator = float(call.rows) if reduction == "mean" else 1.0
        call.single(
            call.k.set_norm, norm, np.float64(denominator), np.float64(1.0), np.float64(0.0)
        )
        grad, target_out = call.grad_buffer(return_grad, out, avoid=dense)
    low, high = _keras_clip(dtype, mode)
    spread = smoothing / call.classes if call.classes else 0.0
    row_loss, row_z = _row_buffers(call)
    call.launch_rows(
        call.k.keras_rows,
        call.matrix,
        dense,
        flat,
        bool(sparse),
        bool(from_logits),
        np.int64(mode),
        scalar(smoothing),
        scalar(spread),
        scalar(alpha),
        scalar(gamma),
        low,
        high,
        np.int64(ignore_class),
        norm,
        bool(return_grad),
        grad,
        row_loss,
    )
    loss, _ = call.reduce(row_loss, row_z, False, norm, reduction)
    return loss, (call.finish_grad(grad, target_out) if return_grad else None)
