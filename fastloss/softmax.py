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
import math
from typing import Any

import numpy as np

from fastloss import _reduction, _rows, _threading
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


_KERAS_CROSSENTROPY = 0  # kernels.softmax.KERAS_CROSSENTROPY
_KERAS_FOCAL = 1  # kernels.softmax.KERAS_FOCAL


class _Call:
    """One call's public arguments, resolved once for both plans: the CPU's (:func:`_cpu`)
    and the device's (:func:`fastloss._cuda_softmax.run`) launch the declaration, flags and
    parameters it gives and reduce by the denominators it says.

    ``loss`` is ``"cross_entropy"``, ``"focal"``, ``"nll"`` or ``"keras"`` (Keras's three,
    told apart by ``mode``, ``sparse`` and ``from_logits``; classes along ``axis``, torch's
    dim 1 otherwise). The kernels skip the rows labelled :attr:`skip` (torch's
    ``ignore_index``; -100 for Keras, whose ``ignore_class`` rows are relabelled so and, being
    :attr:`masked`, leave the mean); :attr:`skipped` names the skipped labels in an
    out-of-range error.
    """

    def __init__(self, loss: str, reduction: str, return_grad: bool, *,
                 return_z_loss: bool = False, hess: bool = False, ignore_index: int = -100,
                 smoothing: float = 0.0, softcap: float = 0.0, z_scale: float = 0.0,
                 alpha: float = 1.0, gamma: float = 0.0, mode: int = _KERAS_CROSSENTROPY,
                 sparse: bool = False, from_logits: bool = False,
                 ignore_class: int | None = None, axis: int | None = None):  # fmt: skip
        self.loss, self.reduction, self.return_grad = loss, reduction, return_grad
        self.return_z_loss, self.hess = return_z_loss, hess
        self.ignore_index, self.smoothing, self.softcap = ignore_index, smoothing, softcap
        self.z_scale, self.alpha, self.gamma = z_scale, alpha, gamma
        self.mode, self.sparse, self.from_logits = mode, sparse, from_logits
        self.ignore_class, self.axis = ignore_class, axis
        keras = loss == "keras"
        self.skip = -100 if keras else ignore_index
        self.masked = keras and ignore_class is not None
        # the label whose rows are masked (Keras's ignore_class), or the skipped one
        self.mask_label = ignore_class if self.masked else self.skip
        self.skipped = None
        if keras and sparse:
            self.skipped = "-100 (skipped as Keras's torch backend skips it)"
            if ignore_class == -100:
                self.skipped = "ignore_class (-100)"
            elif ignore_class is not None:
                # Keras masks ignore_class and its torch backend still skips -100: both give
                # 0, and only the masked samples leave the mean
                self.skipped = f"ignore_class ({ignore_class}) or -100"

    def kind(self, probabilities: bool) -> str:
        """The declaration's kind: ``"index"`` (cross-entropy and focal loss against class
        indices), ``"probs"`` (against class ``probabilities``), ``"nll"``, ``"keras_sparse"``
        or ``"keras_dense"`` (Keras's clipped probabilities; from logits, the focal form)."""
        if self.loss == "nll":
            return "nll"
        if self.loss == "keras" and not (self.from_logits and self.mode == _KERAS_CROSSENTROPY):
            return "keras_sparse" if self.sparse else "keras_dense"
        if self.loss == "keras" and self.sparse:  # Keras takes log_softmax: cross-entropy
            return "index"
        return "probs" if probabilities and self.loss != "focal" else "index"

    def check_probabilities(self) -> None:
        """torch refuses ``ignore_index`` with class probabilities; the softcap is for logits
        against class indices."""
        if self.ignore_index != -100:
            raise ValueError(
                f"ignore_index: not supported with class-probability targets (floating target "
                f"of input's shape), got {self.ignore_index}"
            )
        if self.softcap:
            raise ValueError(
                "softcap: supported with class-index targets only, got class probabilities"
            )

    def declaration(self, kind: str, has_weight: bool, weight_sum: float, dtype, shape, classes):
        """``(name, flags, params)``: the declaration of :mod:`fastloss.kernels.softmax` to
        launch, its compile-time flags and runtime parameters, for an input of ``shape`` and
        compute ``dtype``; ``weight_sum`` is the sum of the class weights (``classes``
        without)."""
        hess = "_HESS" if self.hess else ""
        if kind == "index":
            name = ("CROSS_ENTROPY_SMOOTHED" if self.smoothing else "CROSS_ENTROPY") + hess
            flags = (has_weight, self.softcap > 0, self.z_scale != 0, self.loss == "focal")
            params = (np.int64(self.skip), weight_sum, self.smoothing, self.softcap,
                      self.z_scale, self.alpha, self.gamma)  # fmt: skip
            return name, flags, params
        if kind == "nll":
            return "NLL", (has_weight,), (np.int64(self.ignore_index),)
        # label smoothing's mass per class: Keras's is over the last axis's size, whatever
        # axis is
        last = shape[-1] if self.loss == "keras" else classes
        spread = self.smoothing / last if last else 0.0
        if kind == "probs":
            params = (1.0 - self.smoothing, spread, self.z_scale)
            return "CROSS_ENTROPY_PROBS" + hess, (has_weight, self.z_scale != 0), params
        low, high = (float(v) for v in _keras_clip(dtype, self.mode))
        if kind == "keras_sparse":
            return "KERAS_SPARSE" + hess, (), (low, high, np.int64(self.skip))
        name = ("KERAS_FOCAL_LOGITS" if self.from_logits else "KERAS_PROBS") + hess
        params = (1.0 - self.smoothing, spread, self.alpha, self.gamma, low, high)
        return name, (self.mode == _KERAS_FOCAL,), params

    def mean_over(self, kind: str, rows: int, masked: float) -> float | None:
        """The denominator of a mean over ``rows`` rows, ``masked`` of them masked, where it is
        not torch's (None: the count of the rows not skipped, or their class weights' sum):
        every row against probabilities and for Keras, the unmasked ones with Keras's
        ``ignore_class`` (none left: inf, Keras's mean being 0)."""
        if kind in ("probs", "keras_dense"):
            return float(rows)
        if self.loss != "keras" or not self.sparse:
            return None
        if not self.masked:
            return float(rows)
        kept = rows - masked
        return float(kept) if kept else math.inf

    def finish(self, loss, z, grad, hess):
        """The public result: ``loss``, or the tuple of it and what was asked."""
        values = [loss]
        if self.return_z_loss:
            values.append(z)
        if self.return_grad:
            values.append(grad)
        if self.hess:
            values.append(hess)
        return values[0] if len(values) == 1 else tuple(values)


def _run(call: _Call, input: ArrayLike, target: ArrayLike, weight=None, out=None):
    """``call`` on ``input``'s backend: the device plan for a device array (CuPy or any
    ``__cuda_array_interface__``), the CPU plan otherwise."""
    if is_device_array(input):
        from fastloss import _cuda_softmax

        return call.finish(*_cuda_softmax.run(call, input, target, weight, out))
    return call.finish(*_cpu(call, input, target, weight, out))


def _layout(input: ArrayLike, axis: int | None = None, name: str = "input") -> _rows.Rows:
    """``input`` checked and laid out as rows (:class:`fastloss._rows.Rows`): one per
    position, its classes (along ``axis``; torch's dim 1, dim 0 of a 1-D input, by default)
    last, in the compute dtype."""
    x = host_array(input, name)
    if x.ndim == 0:
        raise ValueError(
            f"{name}: expected an array of shape (C,), (N, C) or (N, C, d1, ..., dk), "
            "got a 0-d array"
        )
    if x.dtype.kind != "f":
        raise unsupported_dtype(name, x.dtype, "a floating dtype")
    dtype = compute_dtype(x.dtype, name)
    grad_dtype = _grad_dtype(x, dtype)  # the input's floating dtype, as torch
    if axis is None:
        axis = 0 if x.ndim == 1 else 1
    elif not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: expected an axis of input's {x.ndim} dimensions, got {axis}")
    if x.shape[axis] == 0:
        raise ValueError(
            f"{name}: expected at least one class along axis {axis % x.ndim}, got shape {x.shape}"
        )
    return _rows.Rows(x, dtype, grad_dtype, axis, name)


def _class_weight(weight: object, rows: _rows.Rows) -> tuple[np.ndarray, bool]:
    if weight is None:
        return np.ones(rows.classes, rows.dtype), False
    w = host_array(weight, "weight")
    if w.shape != (rows.classes,):
        raise ValueError(
            f"weight: expected a 1-D array of {rows.classes} class weights, got shape {w.shape}"
        )
    return np.ascontiguousarray(check_cast(w, rows.dtype, "weight")), True


def _index_target(target: object, rows: _rows.Rows, name: str = "target") -> np.ndarray:
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
    rows: _rows.Rows,
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


def _cpu(call: _Call, input, target, weight, out):
    """The CPU plan of ``call``: ``(loss, z_loss, grad, hess)`` (None where not computed)."""
    rows = _layout(input, call.axis)
    if call.loss == "keras":
        labels = (_sparse_target if call.sparse else _dense_target)(target, rows)
        weight_array, has_weight = _class_weight(None, rows)
        kind = call.kind(not call.sparse)
    else:
        weight_array, has_weight = _class_weight(weight, rows)
        t = host_array(target, "target")
        probabilities = call.loss == "cross_entropy" and t.dtype.kind == "f"
        kind = call.kind(probabilities and t.shape == rows.shape)
        if kind == "probs":
            call.check_probabilities()
            labels = _dense_target(t, rows)
        else:
            labels = _index_target(t, rows)
    count, row_weights, masked = float(rows.rows), None, 0.0
    if kind in ("index", "nll", "keras_sparse"):
        if call.masked and call.ignore_class != -100:
            is_masked = labels == call.ignore_class
            masked = float(np.count_nonzero(is_masked))
            labels = np.where(is_masked, np.int64(-100), labels)
        count, row_weights = _checked_targets(
            labels, rows, call.skip, weight_array, has_weight, call.skipped
        )
        if call.masked and call.ignore_class == -100:
            masked = rows.rows - count
    z_count = float(count)
    mean_over = call.mean_over(kind, rows.rows, masked)
    if mean_over is not None:
        count, row_weights = mean_over, None
    reduction = call.reduction
    denominator = _reduction.mean_denominator(count, row_weights) if reduction == "mean" else 1.0
    if call.z_scale and row_weights is not None and call.return_grad and _reduction.active():
        raise ValueError(
            "z_loss_scale: an Accumulator's chunk gradient of a weighted cross-entropy with a "
            "z-loss is not supported (the two means have different denominators)"
        )
    weight_sum = float(rows.classes)
    if has_weight and kind == "index":
        weight_sum = float(np.sum(weight_array, dtype=np.float64))
    name, flags, params = call.declaration(
        kind, has_weight, weight_sum, rows.dtype, rows.shape, rows.classes
    )
    spec = getattr(_module(), name)
    arrays = (
        (rows.matrix, labels) if kind.startswith("keras") else (rows.matrix, labels, weight_array)
    )
    # the gradient may be the input itself, never (part of) the target or the weights
    grad = rows.grad_buffer(out, arrays[1:]) if call.return_grad else None
    second = None
    if call.hess and kind != "nll":
        second = np.empty(rows.matrix.shape, rows.dtype)
    scales = None
    if call.return_grad:
        scales = (_rows.scale(reduction, denominator), _rows.scale(reduction, z_count))
        scales = scales[: len(spec.scales)]
    gradients = tuple(a for a in (grad, second) if a is not None)
    row_loss, *row_z = _rows.launch(spec, flags, arrays, params, scales, gradients)
    mean = (count, row_weights, denominator)
    z = None
    if kind == "index" and reduction == "mean" and call.z_scale:
        # z-loss is reduced over the rows not ignored, whatever the class weights
        ce = rows.reduce(row_loss - row_z[0], "mean", *mean)
        z = rows.reduce(row_z[0], "mean", z_count, name="z")
        loss = rows.dtype.type(ce + z)
    else:
        loss = rows.reduce(row_loss, reduction, *mean)
        if row_z:
            z = rows.reduce(row_z[0], reduction, z_count, part=False)
    if call.return_grad:
        grad = rows.finish_grad(grad, out)
    if second is not None:
        second = rows.finish_grad(second, None)
    elif call.hess:  # NLL is linear in its input
        second = np.zeros(rows.shape, rows.grad_dtype)
    return loss, z, grad, second


def _check_hess(return_hess: object, device: bool) -> bool:
    """``return_hess`` checked (a bool); NotImplementedError on the device."""
    return_hess = check_option(return_hess, "return_hess", "bool")
    if return_hess and device:
        raise NotImplementedError(
            "return_hess: second derivatives are computed on the CPU only; device arrays "
            "support return_grad, not return_hess yet"
        )
    return return_hess


def _check_smoothing(label_smoothing: object) -> float:
    return check_option(label_smoothing, "label_smoothing", low=0.0, high=1.0)


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
        is included; with class indices or class probabilities.
    return_z_loss : bool
        Also return the z-loss (already included in the loss).
    return_grad : bool
        Also return the gradient with respect to ``input``.
    return_hess : bool
        Also return the diagonal of the Hessian with respect to ``input``,
        :math:`A\, p_c (1 - p_c)` with :math:`A` the gradient's coefficient of :math:`p_c`
        (scaled by the reduction as the gradient is; scikit-learn's ``HalfMultinomialLoss``
        diagonal); implies ``return_grad``. The z-loss adds :math:`2 \lambda p_c^2` (its own
        scale), and with ``softcap`` the chain rule through :math:`y = s \tanh(x / s)` gives
        :math:`h_y (1 - u^2)^2 - 2 u (1 - u^2) g_y / s`, :math:`u = y / s`, :math:`g_y, h_y`
        the derivatives by the capped logit.
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
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    call = _Call(
        "cross_entropy", reduction, return_grad, return_z_loss=return_z_loss, hess=hess,
        ignore_index=ignore_index, smoothing=smoothing, softcap=cap, z_scale=z_scale,
    )  # fmt: skip
    return _run(call, input, target, weight, out)


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
    call = _Call("nll", reduction, return_grad, hess=hess, ignore_index=ignore_index)
    return _run(call, input, target, weight, out)


def focal_loss(
    input: ArrayLike,
    target: ArrayLike,
    alpha: float = 1.0,
    gamma: float = 2.0,
    reduction: str = "mean",
    ignore_index: int = -100,
    *,
    return_grad: bool = False,
    return_hess: bool = False,
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

    ``return_hess=True`` adds the Hessian's diagonal: with :math:`A` the factor above and
    :math:`B = p_t\, dA/dp_t = \gamma (1 - p_t)^{\gamma - 2} p_t \bigl((1 - p_t) \mathrm{ce}
    - 2 (1 - p_t) - (\gamma - 1) p_t \mathrm{ce}\bigr)`,

    .. math::

        \frac{\partial^2 \ell}{\partial x_c^2} = \alpha \bigl(A p_c (1 - p_c)
            - B (p_c - [c = t])^2\bigr),

    scaled as the gradient is (0 at :math:`p_t = 1`).

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.focal_loss([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]], [2, 0])), 6)
    0.045678
    """
    reduction = check_reduction(reduction)
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    g = _check_gamma(gamma)
    alpha = check_option(alpha, "alpha")
    ignore_index = check_option(ignore_index, "ignore_index", "int")
    call = _Call(
        "focal", reduction, return_grad, hess=hess, ignore_index=ignore_index, alpha=alpha,
        gamma=g,
    )  # fmt: skip
    return _run(call, input, target, out=out)


# --- Keras's semantics, in the same form (input = y_pred, target = y_true) -------------------


def _keras_clip(dtype: np.dtype, mode: int) -> tuple:
    """The clip range ``[1e-7, 1 - 1e-7]`` of Keras's probabilities, as it meets ``dtype``:
    Python floats in the cross-entropies (``torch.clip``), float32 tensors in the focal loss
    (``keras.ops.clip`` converts its bounds to floatx first)."""
    low, high = 1e-7, 1.0 - 1e-7
    if mode == _KERAS_FOCAL:
        low, high = float(np.float32(low)), float(np.float32(high))
    return dtype.type(low), dtype.type(high)


def _dense_target(target: object, rows: _rows.Rows) -> np.ndarray:
    y = host_array(target, "target")
    if y.shape != rows.shape:
        raise ValueError(f"target: expected the shape of input {rows.shape}, got {y.shape}")
    return rows.like(y, "target")


def _sparse_target(target: object, rows: _rows.Rows) -> np.ndarray:
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
    ``return_hess=True`` adds the Hessian's diagonal, scaled as the gradient is: from logits
    :math:`p_c (1 - p_c) \sum_k y'_k`; from probabilities, with :math:`H_c = y'_c / q_c^2`
    (0 outside the clip), :math:`T = \sum_c o_c`, :math:`t = \sum_c G_c \tilde q_c` and
    :math:`S = \sum_c H_c \tilde q_c^2`,

    .. math::

        \frac{\partial^2 \ell}{\partial o_c^2} = \frac{H_c (1 - 2 \tilde q_c)
            - 2 (G_c - t) + S}{T^2}.
    """
    reduction = check_reduction(reduction)
    smoothing = _check_smoothing(label_smoothing)
    from_logits = check_option(from_logits, "from_logits", "bool")
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    axis = check_option(axis, "axis", "int")
    call = _Call(
        "keras", reduction, return_grad, hess=hess, smoothing=smoothing, from_logits=from_logits,
        axis=axis,
    )  # fmt: skip
    return _run(call, input, target, out=out)


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
    ``return_hess=True`` adds the Hessian's diagonal, scaled as the gradient is:
    :math:`p_c (1 - p_c)` from logits, :func:`categorical_crossentropy`'s from probabilities.
    """
    reduction = check_reduction(reduction)
    ignore_class = check_option(ignore_class, "ignore_class", "int", none=True)
    from_logits = check_option(from_logits, "from_logits", "bool")
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    axis = check_option(axis, "axis", "int")
    call = _Call(
        "keras", reduction, return_grad, hess=hess, sparse=True, from_logits=from_logits,
        ignore_class=ignore_class, axis=axis,
    )  # fmt: skip
    return _run(call, input, target, out=out)


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
    return_hess: bool = False,
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

    ``return_hess=True`` adds the Hessian's diagonal, scaled as the gradient is: from
    probabilities :func:`categorical_crossentropy`'s formula with the focal
    :math:`H_c = \alpha y'_c \bigl((1 - q_c)^\gamma / q_c^2 + 2 \gamma (1 - q_c)^{\gamma - 1}
    / q_c - \gamma (\gamma - 1) (1 - q_c)^{\gamma - 2} \log q_c\bigr)`; from logits the chain
    rule through the softmax: with :math:`g_c` the derivative by :math:`p_c`,
    :math:`u = \sum_k g_k p_k` and :math:`M` the Hessian by the probabilities,
    :math:`p_c (1 - 2 p_c)(g_c - u) + p_c^2 (M_{cc} - 2 (M p)_c + p^\top M p)`.
    """
    reduction = check_reduction(reduction)
    hess = _check_hess(return_hess, is_device_array(input))
    return_grad = _check_grad_options(return_grad, out, hess)
    smoothing = _check_smoothing(label_smoothing)
    g = _check_gamma(gamma)
    alpha = check_option(alpha, "alpha")
    from_logits = check_option(from_logits, "from_logits", "bool")
    axis = check_option(axis, "axis", "int")
    call = _Call(
        "keras", reduction, return_grad, hess=hess, smoothing=smoothing, alpha=alpha, gamma=g,
        mode=_KERAS_FOCAL, from_logits=from_logits, axis=axis,
    )  # fmt: skip
    return _run(call, input, target, out=out)
