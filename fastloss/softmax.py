"""The softmax family: cross-entropy, negative log-likelihood and focal loss over class scores.

``cross_entropy`` and ``nll_loss`` keep ``torch.nn.functional``'s names, argument order,
defaults and semantics: inputs of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``,
class-index targets (any integer dtype) or, for ``cross_entropy``, class probabilities, class
weights, ``ignore_index`` and label smoothing exactly as torch computes them. ``focal_loss``
is the multi-class focal loss in the same form.

Every function takes keyword-only ``return_grad`` and ``out``: with ``return_grad=True`` it
returns the gradient with respect to ``input`` from the same pass (of the sum of the returned
values for ``reduction="none"``); ``out`` receives it and may be ``input`` itself, so a
cross-entropy over a logit matrix needs no memory beyond the logits. ``input`` is written only
when it is ``out``, and only once every class index has been checked.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from fastloss import _reduction, _rows, _threading
from fastloss._elementwise import _same_memory, check_out
from fastloss._intake import (
    INT64_MAX,
    check_cast,
    check_nonnegative,
    check_option,
    check_reduction,
    compute_dtype,
    host_array,
    is_device_array,
    legacy_reduction,
    unsupported_dtype,
)
from fastloss.regression import _grad_dtype

ArrayLike = Any

_kernels = None


def _module():
    global _kernels
    if _kernels is None:
        _threading.prepare()
        _kernels = importlib.import_module("fastloss.kernels.softmax")
    return _kernels


def _launch(
    spec_name: str, flags: tuple, arrays: tuple, params: tuple, scales, grad, hess=None
) -> list:
    """The row kernel of the declaration ``spec_name`` (:mod:`fastloss.kernels.softmax`): the
    per-row float64 outputs, the gradient into ``grad`` (and the Hessian's diagonal into
    ``hess``) when ``scales`` are given."""
    spec = getattr(_module(), spec_name)
    outputs = tuple(a for a in (grad, hess) if a is not None)
    return _rows.launch(spec, flags, arrays, params, scales, outputs)


def _scale(reduction: str, denominator: float, return_grad: bool):
    """The gradient's factor ``1 / denominator`` in float64 (inf for 0, as the elementwise
    losses); an Accumulator's while one updates. None without a gradient."""
    if not return_grad:
        return None
    return float(_reduction.grad_scale(reduction, np.dtype(np.float64), denominator, True))


class _Rows:
    """``input`` as a C-contiguous ``(rows, C)`` matrix in the compute dtype, and the way
    back to ``input``'s layout for the gradient."""

    def __init__(self, input: ArrayLike, name: str = "input", class_axis: int | None = None):
        x = host_array(input, name)
        if x.ndim == 0:
            raise ValueError(
                f"{name}: expected an array of shape (C,), (N, C) or (N, C, d1, ..., dk), "
                "got a 0-d array"
            )
        if x.dtype.kind != "f":
            raise unsupported_dtype(name, x.dtype, "a floating dtype")
        self.original = x
        self.dtype = compute_dtype(x.dtype, name)
        self.grad_dtype = _grad_dtype(x, self.dtype)  # the input's floating dtype, as torch
        self.shape = x.shape
        if class_axis is None:  # torch: classes along dim 1 (dim 0 of a 1-D input)
            class_axis = 0 if x.ndim == 1 else 1
        elif not -x.ndim <= class_axis < x.ndim:
            raise ValueError(
                f"axis: expected an axis of input's {x.ndim} dimensions, got {class_axis}"
            )
        self.class_axis = class_axis % x.ndim
        self.classes = x.shape[self.class_axis]
        if self.classes == 0:
            raise ValueError(
                f"{name}: expected at least one class along axis {self.class_axis}, got shape "
                f"{x.shape}"
            )
        # one row per position, classes last
        self.moved = self.class_axis != x.ndim - 1
        moved = np.moveaxis(x, self.class_axis, -1) if self.moved else x
        self.batch_shape = moved.shape[:-1]
        rows = check_cast(moved, self.dtype, name)
        self.matrix = np.ascontiguousarray(rows).reshape(-1, self.classes)

    def move(self, array: np.ndarray) -> np.ndarray:
        """``array`` (of input's shape) with its class axis last."""
        return np.moveaxis(array, self.class_axis, -1) if self.moved else array

    @property
    def rows(self) -> int:
        return self.matrix.shape[0]

    def grad_buffer(self, out: object, *others: np.ndarray) -> np.ndarray:
        """Where the kernel writes the gradient: ``out`` itself when it can be, that is when
        it is laid out as the rows and shares no memory with the other operands (the
        targets, the class weights) or is exactly the input."""
        if out is not None:
            check_out(out, self.shape, self.grad_dtype, "out")
            if (
                not self.moved
                and out.dtype == self.dtype
                and out.flags.c_contiguous
                and (
                    not np.may_share_memory(out, self.matrix)
                    or _same_memory(out.reshape(self.matrix.shape), self.matrix)
                )
                and not any(np.may_share_memory(out, other) for other in others)
            ):
                return out.reshape(self.matrix.shape)
        return np.empty(self.matrix.shape, self.dtype)

    def finish_grad(self, grad: np.ndarray, out: object) -> np.ndarray:
        """The gradient in ``input``'s layout, in ``out`` when given."""
        shaped = grad.reshape(self.batch_shape + (self.classes,))
        if self.moved:
            shaped = np.moveaxis(shaped, -1, self.class_axis)
        if out is not None:
            if not (
                isinstance(out, np.ndarray)
                and np.shares_memory(out, grad)
                and _same_memory(out.reshape(-1), grad.reshape(-1))
            ):
                np.copyto(out, shaped, casting="same_kind")
            return out
        if shaped.dtype != self.grad_dtype:
            shaped = shaped.astype(self.grad_dtype)
        return shaped


def _class_weight(weight: object, rows: _Rows) -> tuple[np.ndarray, bool]:
    if weight is None:
        return np.ones(rows.classes, rows.dtype), False
    w = host_array(weight, "weight")
    if w.shape != (rows.classes,):
        raise ValueError(
            f"weight: expected a 1-D array of {rows.classes} class weights, got shape {w.shape}"
        )
    return np.ascontiguousarray(check_cast(w, rows.dtype, "weight")), True


def _index_target(target: object, rows: _Rows, name: str = "target") -> np.ndarray:
    t = host_array(target, name)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: expected integer class indices (or, for cross_entropy, class "
            f"probabilities of input's shape {rows.shape}), got dtype {t.dtype} and shape "
            f"{t.shape}"
        )
    if t.shape != rows.batch_shape:
        raise ValueError(
            f"{name}: expected class indices of shape {rows.batch_shape} for input of shape "
            f"{rows.shape}, got shape {t.shape}"
        )
    if t.dtype.byteorder not in "=|":
        t = t.astype(t.dtype.newbyteorder("="))
    flat = np.ascontiguousarray(t).reshape(-1)
    if flat.dtype == np.uint64 and flat.size and flat.max() > INT64_MAX:
        # the kernels read indices as int64: 2**64 - 100 would wrap to -100 (ignore_index)
        bad = int(np.argmax(flat > INT64_MAX))
        where = np.unravel_index(bad, rows.batch_shape) if rows.batch_shape else ()
        raise IndexError(
            f"{name}: class index {int(flat[bad])} at position {tuple(int(i) for i in where)} "
            f"is out of range [0, {rows.classes}) and does not fit int64"
        )
    return flat.astype(np.int64, copy=False)


def _checked_targets(
    flat: np.ndarray,
    rows: _Rows,
    ignore_index: int,
    weight: np.ndarray,
    has_weight: bool,
    skipped: str | None = None,
):
    """The count of rows not ignored and, with class weights, each row's weight (0 where
    ignored, float64): a weighted mean's denominator is their sum under the contract.
    ``skipped``: the labels skipped, as the error names them (``ignore_index`` by default)."""
    bad, count, _ = _module().check_targets(
        flat, rows.classes, int(ignore_index), weight, has_weight
    )
    if bad >= 0:
        where = np.unravel_index(bad, rows.batch_shape) if rows.batch_shape else ()
        raise IndexError(
            f"target: class index {int(flat[bad])} at position {tuple(int(i) for i in where)} "
            f"is out of range [0, {rows.classes}) and is not "
            f"{skipped or f'ignore_index ({ignore_index})'}"
        )
    if not has_weight:
        return count, None
    t = flat.astype(np.int64)
    keep = t != ignore_index
    return count, np.where(keep, weight[np.where(keep, t, 0)], 0).astype(np.float64)


def _denominator(reduction: str, count: float, row_weights) -> float:
    """The denominator of a mean (1 otherwise), for the gradient's scale."""
    return _reduction.mean_denominator(count, row_weights) if reduction == "mean" else 1.0


def _loss_and_grad(row_loss, rows: _Rows, reduction, mean, grad, return_grad, out):
    """The reduced loss, and the gradient in ``input``'s layout when asked."""
    loss = _reduce_rows(row_loss, rows, reduction, *mean)
    if not return_grad:
        return loss
    return loss, rows.finish_grad(grad, out)


def _reduce_rows(
    row_loss: np.ndarray,
    rows: _Rows,
    reduction: str,
    count: float = 0.0,
    weights=None,
    denominator=None,
    name: str = "loss",
    part: bool = True,
):
    """Per-row losses reduced under the contract: a mean by ``count`` or by the sum of the
    row ``weights`` (``denominator``, when the caller has it)."""
    if reduction == "none":
        return row_loss.astype(rows.dtype).reshape(rows.batch_shape)
    value = _reduction.reduce_values(
        row_loss, reduction, count=count, weights=weights, denominator=denominator, name=name,
        part=part,
    )  # fmt: skip
    return rows.dtype.type(value)


def _index_rows_call(
    rows: _Rows,
    flat_target: np.ndarray,
    weight: np.ndarray,
    has_weight: bool,
    ignore_index: int,
    reduction: str,
    *,
    smoothing: float = 0.0,
    softcap: float = 0.0,
    z_scale: float = 0.0,
    alpha: float = 1.0,
    gamma: float = 0.0,
    mode: int = 0,
    mean_over: float | None = None,
    return_grad: bool,
    out: object,
    hess: bool = False,
):
    count, row_weights = _checked_targets(flat_target, rows, ignore_index, weight, has_weight)
    scalar = rows.dtype.type
    z_count = float(count)
    if mean_over is not None:  # Keras: the mean over every sample, or the unmasked ones
        count, row_weights = mean_over, None
    denominator = _denominator(reduction, count, row_weights)
    if z_scale and row_weights is not None and return_grad and _reduction.active():
        raise ValueError(
            "z_loss_scale: an Accumulator's chunk gradient of a weighted cross-entropy with a "
            "z-loss is not supported (the two means have different denominators)"
        )
    grad = rows.grad_buffer(out, weight, flat_target) if return_grad else None
    second = np.empty(rows.matrix.shape, rows.dtype) if hess else None
    weight_sum = float(np.sum(weight, dtype=np.float64)) if has_weight else float(rows.classes)
    scales = None
    if return_grad:
        scales = (_scale(reduction, denominator, True), _scale(reduction, z_count, True))
    row_loss, row_z = _launch(
        ("CROSS_ENTROPY_SMOOTHED" if smoothing else "CROSS_ENTROPY") + ("_HESS" if hess else ""),
        (has_weight, softcap > 0, z_scale != 0, mode == _FOCAL),
        (rows.matrix, flat_target, weight),
        (np.int64(ignore_index), weight_sum, smoothing, softcap, z_scale, alpha, gamma),
        scales,
        grad,
        second,
    )
    mean = (count, row_weights, denominator)
    if reduction == "mean" and z_scale:
        # z-loss is reduced over the rows not ignored, whatever the class weights
        ce = _reduce_rows(row_loss - row_z, rows, "mean", *mean)
        z = _reduce_rows(row_z, rows, "mean", z_count, name="z")
        loss = scalar(ce + z)
    else:
        loss = _reduce_rows(row_loss, rows, reduction, *mean)
        z = _reduce_rows(row_z, rows, reduction, z_count, part=False)
    return loss, z, _finished(rows, grad, out, return_grad), _finished(rows, second, None, hess)


def _finished(rows: _Rows, grad, out, wanted: bool):
    return rows.finish_grad(grad, out) if wanted else None


def _finish(result: tuple, return_z_loss: bool, return_grad: bool):
    loss, z, grad, hess = result if len(result) == 4 else (*result, None)
    values = [loss]
    if return_z_loss:
        values.append(z)
    if return_grad:
        values.append(grad)
    if hess is not None:
        values.append(hess)
    return values[0] if len(values) == 1 else tuple(values)


def _check_hess(return_hess: object, device: bool, unsupported: str | None = None) -> bool:
    """``return_hess`` checked (a bool); NotImplementedError where its diagonal is not given."""
    return_hess = check_option(return_hess, "return_hess", "bool")
    if return_hess and device:
        raise NotImplementedError(
            "return_hess: second derivatives are computed on the CPU only; device arrays "
            "support return_grad, not return_hess yet"
        )
    if return_hess and unsupported:
        raise NotImplementedError(f"return_hess: not available {unsupported} yet")
    return return_hess


def _check_smoothing(label_smoothing: object) -> float:
    return check_option(label_smoothing, "label_smoothing", low=0.0, high=1.0)


def _check_probability_options(ignore_index: int, softcap: float) -> None:
    """torch refuses ``ignore_index`` with class probabilities; the softcap is for logits
    against class indices."""
    if ignore_index != -100:
        raise ValueError(
            f"ignore_index: not supported with class-probability targets (floating target of "
            f"input's shape), got {ignore_index}"
        )
    if softcap:
        raise ValueError(
            "softcap: supported with class-index targets only, got class probabilities"
        )


def _check_gamma(gamma: object) -> float:
    return check_option(gamma, "gamma", low=0.0)


def _check_grad_options(return_grad: object, out: object, hess: bool = False) -> bool:
    """``return_grad`` checked (a bool; ``return_hess`` implies it), and ``out`` only with
    it."""
    return_grad = check_option(return_grad, "return_grad", "bool") or hess
    if out is not None and not return_grad:
        raise ValueError("out: receives the gradient, so it needs return_grad=True")
    return return_grad


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    softcap: float | None = None,
    z_loss_scale: float = 0.0,
    return_z_loss: bool = False,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Cross-entropy between logits and class indices or class probabilities.

    Follows ``torch.nn.functional.cross_entropy``. For a row of logits :math:`x` (``C``
    classes) with class index :math:`t`, weights :math:`w` (ones by default) and label
    smoothing :math:`\varepsilon`, with :math:`\mathrm{lse} = \log\sum_c e^{x_c}` and
    :math:`p = \mathrm{softmax}(x)`:

    .. math::

        \ell = (1 - \varepsilon)\, w_t (\mathrm{lse} - x_t)
             + \frac{\varepsilon}{C} \sum_c w_c (\mathrm{lse} - x_c),

    .. math::

        \frac{\partial \ell}{\partial x_c} =
            \Bigl((1 - \varepsilon) w_t + \frac{\varepsilon}{C} \sum_k w_k\Bigr) p_c
            - (1 - \varepsilon) w_t [c = t] - \frac{\varepsilon}{C} w_c .

    Rows whose target is ``ignore_index`` contribute 0. ``"mean"`` divides the sum by
    :math:`\sum_i w_{t_i}` over the rows not ignored (their count without weights), as torch
    does, label smoothing included. With class probabilities :math:`y` (same shape as
    ``input``, floating): :math:`\ell = \sum_c w_c y'_c (\mathrm{lse} - x_c)` with
    :math:`y' = (1 - \varepsilon) y + \varepsilon / C`, gradient
    :math:`p_c \sum_k w_k y'_k - w_c y'_c`, and ``"mean"`` divides by the number of rows.

    Parameters
    ----------
    input : array_like
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; float16 computes in
        float32.
    target : array_like
        Class indices (any integer dtype) of shape ``()``, ``(N,)`` or ``(N, d1, ..., dk)``,
        or class probabilities of ``input``'s shape.
    weight : array_like, optional
        Class weights, shape ``(C,)``.
    size_average, reduce : bool, optional
        Deprecated, as in torch; they override ``reduction``.
    ignore_index : int
        Class index whose rows are skipped (class-index targets only).
    reduction : {"mean", "sum", "none"}
    label_smoothing : float
        In ``[0, 1]``.
    softcap : float, optional
        Beyond torch: logits pass through :math:`s \tanh(x / s)` first (the soft capping of
        large-vocabulary models); the gradient is with respect to the uncapped logits.
    z_loss_scale : float
        Beyond torch: adds :math:`k\,\mathrm{lse}^2` per row not ignored (the auxiliary
        "z-loss"), reduced like the unweighted loss; its gradient :math:`2 k\,\mathrm{lse}\,p_c`
        is included. Class-index targets only.
    return_z_loss : bool
        Also return the z-loss (already included in the loss).
    return_grad : bool
        Also return the gradient with respect to ``input``.
    return_hess : bool
        Also return the diagonal of the Hessian with respect to ``input``,
        :math:`A\, p_c (1 - p_c)` with :math:`A` the gradient's coefficient of :math:`p_c`
        (scaled by the reduction as the gradient is; scikit-learn's ``HalfMultinomialLoss``
        diagonal); implies ``return_grad``. Not with ``softcap`` or ``z_loss_scale``.
    out : ndarray, optional
        Receives the gradient; may be ``input`` itself.

    Returns
    -------
    loss, or a tuple ``(loss, [z_loss], [grad], [hess])``
        A scalar of the compute dtype, or per-row losses for ``reduction="none"``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``; raised before anything
        is written.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> logits = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]])
    >>> loss, grad = fastloss.cross_entropy(logits, [2, 0], return_grad=True)
    >>> round(float(loss), 6)
    0.407606
    >>> grad.round(4)
    array([[ 0.045 ,  0.1224, -0.1674],
           [-0.1674,  0.1224,  0.045 ]])
    >>> round(float(fastloss.cross_entropy(logits, [2, 0], label_smoothing=0.1)), 6)
    0.507606
    >>> _ = fastloss.cross_entropy(logits, [2, 0], return_grad=True, out=logits)  # in place
    >>> logits.round(4)
    array([[ 0.045 ,  0.1224, -0.1674],
           [-0.1674,  0.1224,  0.045 ]])
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    return_z_loss = check_option(return_z_loss, "return_z_loss", "bool")
    ignore_index = check_option(ignore_index, "ignore_index", "int")
    smoothing = _check_smoothing(label_smoothing)
    cap = 0.0 if softcap is None else check_nonnegative(softcap, "softcap", strict=True)
    if cap == np.inf:
        cap = 0.0  # s tanh(x / s) -> x: no capping
    z_scale = check_option(z_loss_scale, "z_loss_scale", low=0.0)
    hess = _check_hess(
        return_hess,
        is_device_array(input),
        "with softcap" if cap else ("with z_loss_scale" if z_scale else None),
    )
    return_grad = _check_grad_options(return_grad, out, hess)
    if is_device_array(input):  # CuPy or any __cuda_array_interface__: CUDA kernels
        from fastloss import _cuda_softmax

        if np.dtype(target.dtype).kind == "f" and tuple(target.shape) == tuple(input.shape):
            _check_probability_options(ignore_index, cap)
            if z_scale or return_z_loss:
                raise ValueError(
                    "z_loss_scale, return_z_loss: with class-probability targets, supported "
                    "on the CPU only so far"
                )

        result = _cuda_softmax.cross_entropy(
            input,
            target,
            weight,
            ignore_index,
            reduction,
            smoothing,
            cap,
            z_scale,
            return_grad=return_grad,
            out=out,
        )
        return _finish(result, return_z_loss, return_grad)
    rows = _Rows(input)
    weight_array, has_weight = _class_weight(weight, rows)
    t = host_array(target, "target")
    if t.dtype.kind == "f" and t.shape == rows.shape:
        _check_probability_options(ignore_index, cap)
        probs = _dense_target(t, rows)
        result = _prob_call(
            rows,
            probs,
            weight_array,
            has_weight,
            smoothing,
            smoothing / rows.classes if rows.classes else 0.0,
            reduction,
            return_grad,
            out,
            z_scale=z_scale,
            hess=hess,
        )
        return _finish(result, return_z_loss, return_grad)
    flat = _index_target(t, rows)
    result = _index_rows_call(
        rows,
        flat,
        weight_array,
        has_weight,
        ignore_index,
        reduction,
        smoothing=smoothing,
        softcap=cap,
        z_scale=z_scale,
        return_grad=return_grad,
        out=out,
        hess=hess,
    )
    return _finish(result, return_z_loss, return_grad)


def _prob_call(
    rows,
    probs,
    weight,
    has_weight,
    smoothing,
    spread,
    reduction,
    return_grad,
    out,
    z_scale=0.0,
    hess=False,
):
    """Cross-entropy against probability rows ``probs`` (laid out as ``rows.matrix``)."""
    count = float(rows.rows)
    denominator = count if reduction == "mean" else 1.0
    grad = rows.grad_buffer(out, probs, weight) if return_grad else None
    second = np.empty(rows.matrix.shape, rows.dtype) if hess else None
    scale = _scale(reduction, denominator, return_grad)
    row_loss, row_z = _launch(
        "CROSS_ENTROPY_PROBS" + ("_HESS" if hess else ""),
        (has_weight, z_scale != 0),
        (rows.matrix, probs, weight),
        (1.0 - smoothing, spread, z_scale),
        None if scale is None else (scale, scale),
        grad,
        second,
    )
    loss = _reduce_rows(row_loss, rows, reduction, count)
    z = _reduce_rows(row_z, rows, reduction, count, part=False)
    return loss, z, _finished(rows, grad, out, return_grad), _finished(rows, second, None, hess)


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    .. math::

        \ell_i = -w_{t_i}\, x_{i, t_i}, \qquad
        \frac{\partial \ell_i}{\partial x_{i,c}} = -w_{t_i} [c = t_i].

    Rows whose target is ``ignore_index`` contribute 0; ``"mean"`` divides by the sum of
    :math:`w_{t_i}` over the rows not ignored. Shapes, dtypes and errors as
    :func:`cross_entropy` with class-index targets. The loss is linear in ``input``:
    ``return_hess=True`` adds its second derivative, zeros.
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    ignore_index = check_option(ignore_index, "ignore_index", "int")
    if is_device_array(input):
        from fastloss import _cuda_softmax

        loss, grad = _cuda_softmax.nll_loss(
            input, target, weight, ignore_index, reduction, return_grad, out
        )
        return (loss, grad) if return_grad else loss
    rows = _Rows(input)
    weight_array, has_weight = _class_weight(weight, rows)
    flat = _index_target(target, rows)
    count, row_weights = _checked_targets(flat, rows, ignore_index, weight_array, has_weight)
    denominator = _denominator(reduction, count, row_weights)
    grad = rows.grad_buffer(out, weight_array, flat) if return_grad else None
    scale = _scale(reduction, denominator, return_grad)
    (row_loss,) = _launch(
        "NLL",
        (has_weight,),
        (rows.matrix, flat, weight_array),
        (np.int64(ignore_index),),
        None if scale is None else (scale,),
        grad,
    )
    mean = (count, row_weights, denominator)
    result = _loss_and_grad(row_loss, rows, reduction, mean, grad, return_grad, out)
    if hess:
        return (*result, np.zeros(rows.shape, rows.grad_dtype))
    return result


def focal_loss(
    input: ArrayLike,
    target: ArrayLike,
    alpha: float = 1.0,
    gamma: float = 2.0,
    reduction: str = "mean",
    ignore_index: int = -100,
    *,
    return_grad: bool = False,
    out: np.ndarray | None = None,
):
    r"""Multi-class focal loss on logits with class-index targets.

    With :math:`\mathrm{ce} = \mathrm{lse} - x_t` and :math:`p_t = e^{-\mathrm{ce}}`:

    .. math::

        \ell = \alpha (1 - p_t)^\gamma\, \mathrm{ce}, \qquad
        \frac{\partial \ell}{\partial x_c} = \alpha\bigl((1 - p_t)^\gamma
            + \gamma (1 - p_t)^{\gamma - 1} p_t\, \mathrm{ce}\bigr)(p_c - [c = t]).

    Rows whose target is ``ignore_index`` contribute 0; ``"mean"`` averages over the rows not
    ignored. Shapes as :func:`cross_entropy` with class-index targets.

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.focal_loss([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]], [2, 0])), 6)
    0.045678
    """
    reduction = check_reduction(reduction)
    return_grad = _check_grad_options(return_grad, out)
    g = _check_gamma(gamma)
    alpha = check_option(alpha, "alpha")
    ignore_index = check_option(ignore_index, "ignore_index", "int")
    if is_device_array(input):
        from fastloss import _cuda_softmax

        result = _cuda_softmax.focal_loss(
            input, target, alpha, g, reduction, ignore_index, return_grad, out
        )
        return _finish(result, False, return_grad)
    rows = _Rows(input)
    flat = _index_target(target, rows)
    weight_array, has_weight = _class_weight(None, rows)
    result = _index_rows_call(
        rows,
        flat,
        weight_array,
        has_weight,
        ignore_index,
        reduction,
        alpha=alpha,
        gamma=g,
        mode=_FOCAL,
        return_grad=return_grad,
        out=out,
    )
    return _finish(result, False, return_grad)


_FOCAL = 1  # kernels.softmax.FOCAL, without importing Numba here


# --- Keras's semantics, in the same form (input = y_pred, target = y_true) -------------------

_KERAS_CROSSENTROPY = 0  # kernels.softmax.KERAS_CROSSENTROPY
_KERAS_FOCAL = 1  # kernels.softmax.KERAS_FOCAL


def _keras_clip(dtype: np.dtype, mode: int) -> tuple:
    """The clip range ``[1e-7, 1 - 1e-7]`` of Keras's probabilities, as it meets ``dtype``:
    Python floats in the cross-entropies (``torch.clip``), float32 tensors in the focal loss
    (``keras.ops.clip`` converts its bounds to floatx first)."""
    low, high = 1e-7, 1.0 - 1e-7
    if mode == _KERAS_FOCAL:
        low, high = float(np.float32(low)), float(np.float32(high))
    return dtype.type(low), dtype.type(high)


def _keras_spread(smoothing: float, rows: _Rows) -> float:
    """Keras's smoothing mass per class: ``label_smoothing / shape[-1]``, the last axis's
    size whatever ``axis`` is."""
    last = rows.shape[-1]
    return smoothing / last if last else 0.0


def _dense_target(target: object, rows: _Rows) -> np.ndarray:
    y = host_array(target, "target")
    if y.shape != rows.shape:
        raise ValueError(f"target: expected the shape of input {rows.shape}, got {y.shape}")
    return np.ascontiguousarray(check_cast(rows.move(y), rows.dtype, "target")).reshape(
        rows.matrix.shape
    )


def _sparse_target(target: object, rows: _Rows) -> np.ndarray:
    t = host_array(target, "target")
    if t.ndim == len(rows.shape) and t.ndim and t.shape[rows.class_axis] == 1:
        t = np.squeeze(t, axis=rows.class_axis)  # Keras accepts (N, 1) labels
    if t.dtype.kind == "f":
        if t.size and np.isnan(t).any():
            where = tuple(int(i) for i in np.argwhere(np.isnan(t))[0])
            raise ValueError(f"target: expected class labels, got NaN at position {where}")
        # a label outside int64 (inf, 1e30) would cast to -2**63 and be reported as that
        wide = ~((t > -9.3e18) & (t < 9.2e18))  # float64 rounds 2**63 - 1 up to 2**63
        if t.size and wide.any():
            where = tuple(int(i) for i in np.argwhere(wide)[0])
            raise IndexError(
                f"target: class label {float(t[where])} at position {where} is out of range "
                f"[0, {rows.classes})"
            )
        t = t.astype(np.int64)  # Keras casts labels to int64 (truncating)
    return _index_target(t, rows)


def _keras_call(
    rows: _Rows,
    target: np.ndarray,
    *,
    sparse: bool,
    from_logits: bool,
    mode: int,
    smoothing: float,
    alpha: float,
    gamma: float,
    ignore_class: int,
    reduction: str,
    mean_over: float,
    return_grad: bool,
    out: object,
):
    denominator = mean_over if reduction == "mean" else 1.0
    mean = (mean_over, None, denominator)
    # the gradient may be the input itself, never (part of) the target
    grad = rows.grad_buffer(out, target) if return_grad else None
    scale = _scale(reduction, denominator, return_grad)
    scales = None if scale is None else (scale,)
    low, high = (float(v) for v in _keras_clip(rows.dtype, mode))
    if sparse:
        params = (low, high, np.int64(ignore_class))
        (row_loss,) = _launch("KERAS_SPARSE", (), (rows.matrix, target), params, scales, grad)
    else:
        params = (1.0 - smoothing, _keras_spread(smoothing, rows), alpha, gamma, low, high)
        name = "KERAS_FOCAL_LOGITS" if from_logits else "KERAS_PROBS"
        flags = (mode == _KERAS_FOCAL,)
        (row_loss,) = _launch(name, flags, (rows.matrix, target), params, scales, grad)
    return _loss_and_grad(row_loss, rows, reduction, mean, grad, return_grad, out)


def _keras_device(input, target, axis, **options):
    """Keras's losses on a CUDA device: classes along the last axis only."""
    ndim = len(input.shape)
    if axis not in (-1, ndim - 1):
        raise ValueError(
            f"axis: on a CUDA device only the last axis (-1 or {ndim - 1}) is supported, got {axis}"
        )
    from fastloss import _cuda_softmax

    loss, grad = _cuda_softmax.keras(input, target, **options)
    return (loss, grad) if options["return_grad"] else loss


def categorical_crossentropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    reduction: str = "mean",
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Cross-entropy of predicted class probabilities against target probabilities, as
    ``keras.losses.categorical_crossentropy`` computes it.

    With :math:`y' = (1 - \varepsilon) y + \varepsilon / C` (label smoothing) along ``axis``:
    with ``from_logits=False`` the predictions :math:`o` are renormalised,
    :math:`\tilde q = o / \sum_c o_c`, clipped to :math:`q = \mathrm{clip}(\tilde q, 10^{-7},
    1 - 10^{-7})` and :math:`\ell = -\sum_c y'_c \log q_c`; with ``from_logits=True``
    :math:`\ell = -\sum_c y'_c \log \mathrm{softmax}(o)_c`. Gradient, with
    :math:`G_c = -y'_c / q_c` where :math:`\tilde q_c` lies inside the clip range and 0
    elsewhere: :math:`\partial\ell/\partial o_j = (G_j - \sum_c G_c \tilde q_c) / \sum_c o_c`
    (and :math:`p_j \sum_c y'_c - y'_j` from logits).

    ``reduction``: "mean" averages the per-sample losses (Keras's ``sum_over_batch_size``),
    "sum" adds them, "none" returns them (``input``'s shape without ``axis``).
    ``return_hess=True`` (``from_logits=True`` only) adds the Hessian's diagonal
    :math:`p_c (1 - p_c) \sum_k y'_k`, scaled as the gradient is.
    """
    reduction = check_reduction(reduction)
    smoothing = _check_smoothing(label_smoothing)
    from_logits = check_option(from_logits, "from_logits", "bool")
    hess = _check_hess(
        return_hess, is_device_array(input), None if from_logits else "with from_logits=False"
    )
    return_grad = _check_grad_options(return_grad, out, hess)
    axis = check_option(axis, "axis", "int")
    if is_device_array(input):
        return _keras_device(
            input,
            target,
            axis,
            sparse=False,
            from_logits=from_logits,
            mode=_KERAS_CROSSENTROPY,
            smoothing=smoothing,
            alpha=1.0,
            gamma=0.0,
            ignore_class=-1,
            masked=False,
            reduction=reduction,
            return_grad=return_grad,
            out=out,
        )
    rows = _Rows(input, class_axis=axis)
    y = _dense_target(target, rows)
    if from_logits:  # Keras takes log_softmax: the probability-target cross-entropy
        ones, has_weight = _class_weight(None, rows)
        spread = _keras_spread(smoothing, rows)
        result = _prob_call(
            rows, y, ones, has_weight, smoothing, spread, reduction, return_grad, out, hess=hess
        )
        return _finish(result, False, return_grad)
    return _keras_call(
        rows,
        y,
        sparse=False,
        from_logits=False,
        mode=_KERAS_CROSSENTROPY,
        smoothing=smoothing,
        alpha=1.0,
        gamma=0.0,
        ignore_class=-1,
        reduction=reduction,
        mean_over=float(rows.rows),
        return_grad=return_grad,
        out=out,
    )


def sparse_categorical_crossentropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
    reduction: str = "mean",
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Cross-entropy of predicted class probabilities against class indices, as
    ``keras.losses.sparse_categorical_crossentropy`` computes it.

    :func:`categorical_crossentropy` with one-hot targets: :math:`\ell = -\log q_t` (renormalised
    and clipped probabilities) or :math:`\mathrm{lse}(o) - o_t` with ``from_logits=True``.
    Labels may carry a trailing axis of size 1, and float labels are truncated, as Keras
    does. Samples labelled ``ignore_class`` give 0 and are left out of the mean (Keras's
    mask); without ``ignore_class``, label -100 is skipped as Keras's torch backend skips it.
    ``return_hess=True`` (``from_logits=True`` only) adds the Hessian's diagonal
    :math:`p_c (1 - p_c)`, scaled as the gradient is.
    """
    reduction = check_reduction(reduction)
    ignore_class = check_option(ignore_class, "ignore_class", "int", none=True)
    ignore = -100 if ignore_class is None else ignore_class
    from_logits = check_option(from_logits, "from_logits", "bool")
    hess = _check_hess(
        return_hess, is_device_array(input), None if from_logits else "with from_logits=False"
    )
    return_grad = _check_grad_options(return_grad, out, hess)
    axis = check_option(axis, "axis", "int")
    if is_device_array(input):
        return _keras_device(
            input,
            target,
            axis,
            sparse=True,
            from_logits=from_logits,
            mode=_KERAS_CROSSENTROPY,
            smoothing=0.0,
            alpha=1.0,
            gamma=0.0,
            ignore_class=ignore,
            masked=ignore_class is not None,
            reduction=reduction,
            return_grad=return_grad,
            out=out,
        )
    rows = _Rows(input, class_axis=axis)
    flat = _sparse_target(target, rows)
    ones, has_weight = _class_weight(None, rows)
    skipped = "-100 (skipped as Keras's torch backend skips it)"
    masked = 0
    if ignore_class == -100:
        skipped = "ignore_class (-100)"
    elif ignore_class is not None:
        # Keras masks ignore_class and its torch backend still skips -100: both give 0, and
        # only the masked samples leave the mean
        skipped = f"ignore_class ({ignore_class}) or -100"
        is_masked = flat == ignore_class
        masked = int(np.count_nonzero(is_masked))
        flat = np.where(is_masked, np.int64(-100), flat)
    count, _ = _checked_targets(flat, rows, -100, ones, False, skipped)
    ignore = -100
    # Keras's mean divides by every sample without ignore_class, by the unmasked ones with it
    mean_over = float(rows.rows if ignore_class is None else rows.rows - masked)
    if ignore_class == -100:
        mean_over = float(count)
    if mean_over == 0 and ignore_class is not None:
        mean_over = np.inf  # every sample masked: Keras's mean is 0 (a division by no nan)
    if from_logits:
        result = _index_rows_call(
            rows,
            flat,
            ones,
            has_weight,
            ignore,
            reduction,
            mean_over=mean_over,
            return_grad=return_grad,
            out=out,
            hess=hess,
        )
        return _finish(result, False, return_grad)
    return _keras_call(
        rows,
        flat,
        sparse=True,
        from_logits=False,
        mode=_KERAS_CROSSENTROPY,
        smoothing=0.0,
        alpha=1.0,
        gamma=0.0,
        ignore_class=ignore,
        reduction=reduction,
        mean_over=mean_over,
        return_grad=return_grad,
        out=out,
    )


def categorical_focal_crossentropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
    reduction: str = "mean",
    return_grad: bool = False,
    out: np.ndarray | None = None,
):
    r"""Categorical focal cross-entropy, as ``keras.losses.categorical_focal_crossentropy``
    computes it.

    With :math:`q` the renormalised, clipped probabilities (of ``softmax(input)`` when
    ``from_logits``) and :math:`y'` the smoothed targets as in :func:`categorical_crossentropy`:

    .. math::

        \ell = \sum_c \alpha (1 - q_c)^\gamma (-y'_c \log q_c), \qquad
        \frac{\partial \ell}{\partial q_c} = \alpha\bigl(\gamma (1 - q_c)^{\gamma - 1}
            y'_c \log q_c - (1 - q_c)^\gamma y'_c / q_c\bigr),

    carried back through the clip (0 outside its range), the renormalisation and the softmax.
    ``alpha`` is a scalar.
    """
    reduction = check_reduction(reduction)
    return_grad = _check_grad_options(return_grad, out)
    smoothing = _check_smoothing(label_smoothing)
    g = _check_gamma(gamma)
    alpha = check_option(alpha, "alpha")
    from_logits = check_option(from_logits, "from_logits", "bool")
    axis = check_option(axis, "axis", "int")
    if is_device_array(input):
        return _keras_device(
            input,
            target,
            axis,
            sparse=False,
            from_logits=from_logits,
            mode=_KERAS_FOCAL,
            smoothing=smoothing,
            alpha=alpha,
            gamma=g,
            ignore_class=-1,
            masked=False,
            reduction=reduction,
            return_grad=return_grad,
            out=out,
        )
    rows = _Rows(input, class_axis=axis)
    y = _dense_target(target, rows)
    return _keras_call(
        rows,
        y,
        sparse=False,
        from_logits=from_logits,
        mode=_KERAS_FOCAL,
        smoothing=smoothing,
        alpha=alpha,
        gamma=g,
        ignore_class=-1,
        reduction=reduction,
        mean_over=float(rows.rows),
        return_grad=return_grad,
        out=out,
    )
