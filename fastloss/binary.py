"""Binary classification losses: torch's, torchvision's and Keras's.

``binary_cross_entropy`` and ``binary_cross_entropy_with_logits`` keep
``torch.nn.functional``'s names, argument order, defaults and semantics, ``sigmoid_focal_loss``
those of ``torchvision.ops.sigmoid_focal_loss``. ``binary_crossentropy`` and
``binary_focal_crossentropy`` compute Keras 3's losses of those names (on its torch backend) in
the torch form: ``input`` is Keras's ``y_pred``, ``target`` its ``y_true``, and the reduction is
fastloss's (``"mean"`` is Keras's ``"sum_over_batch_size"``).

Every function takes keyword-only ``return_grad`` and ``out``: with ``return_grad=True`` it
returns ``(loss, grad)``, the gradient of the returned loss with respect to ``input`` (of the
sum of the returned losses for ``reduction="none"``) from the same single pass; ``out``
receives the gradient and may be ``input`` itself. ``return_hess=True`` (which implies
``return_grad``) returns ``(loss, grad, hess)``, ``hess`` the second derivative with respect
to ``input`` element by element (docs/losses.md, "Second derivatives"); device arrays raise
``NotImplementedError`` for it.

Integer and bool targets are accepted and cast to the input's compute dtype (torch refuses
them for these losses).

Device arrays (CuPy, Numba's, anything with ``__cuda_array_interface__``) run the CUDA kernels
generated from the same declarations (:mod:`fastloss._cuda`): the loss comes back as a device
array (0-d for ``"mean"``/``"sum"``), the gradient too, and nothing waits for the device except
``binary_cross_entropy``'s range check (see there). All array arguments of a device call must be
on the device (``weight`` and ``pos_weight`` may also be real scalars): a host array there raises
``TypeError`` naming it, it is never copied over silently.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastloss import _reduction
from fastloss._intake import (
    check_option,
    check_reduction,
    compute_dtype,
    host_array,
    is_device_array,
    legacy_reduction,
)
from fastloss.regression import DEVICE_HESS, _loss

ArrayLike = Any

# Keras's backend.epsilon(), as a Python float: Keras clips probabilities to
# [epsilon, 1 - epsilon] with torch.clip and Python scalars, which torch converts to the
# tensor's dtype (float32(1e-7) for float32, 1e-7 itself for float64).
KERAS_EPSILON = 1e-7


# --- shared intake -----------------------------------------------------------------------------


def _on_device(*values: object) -> bool:
    return any(is_device_array(v) for v in values)


def _device_shape(value: object, name: str, scalar_ok: bool = False) -> tuple[int, ...]:
    """Shape of the device array ``value`` (``()`` for a real scalar where ``scalar_ok``);
    ``TypeError`` naming ``name`` for anything else: a device call copies nothing over."""
    if is_device_array(value):
        shape = getattr(value, "shape", None)
        if shape is None:
            shape = value.__cuda_array_interface__["shape"]
        return tuple(int(s) for s in shape)
    real = isinstance(value, int | float | np.integer | np.floating | np.bool_)
    if scalar_ok and real:
        return ()
    raise TypeError(
        f"{name}: expected a device array (CuPy, Numba or __cuda_array_interface__) like the "
        f"other arguments, got {type(value).__module__}.{type(value).__name__}; host arrays "
        "are not copied to the device, move it there first"
    )


def _shape(value: object) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape)


def _device_dtype(value: object) -> np.dtype:
    try:
        return np.dtype(value.dtype)
    except (AttributeError, TypeError):
        return np.dtype(value.__cuda_array_interface__["typestr"])


def _device_weight(value: object, shape: tuple[int, ...], name: str) -> None:
    """On the device path: ``value`` (a device array or a scalar) broadcasts to ``shape``."""
    found = _device_shape(value, name, scalar_ok=True)
    try:
        fits = np.broadcast_shapes(found, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name}: expected a shape that broadcasts to the shape of input {shape}, got {found}"
        )


def _device_run(name: str, arrays: dict, *, reduction: str, weight=None, **kwargs):
    """The device path of one binary kernel, ``weight`` broadcast to the input on the device."""
    from fastloss import _cuda, _elementwise

    return _cuda.run(
        _elementwise.spec("binary", name),
        list(arrays.values()),
        list(arrays),
        reduction=reduction,
        weight=weight,
        broadcast_weight=True,
        **kwargs,
    )


def _pair(
    function: str,
    input: object,
    target: object,
    names: tuple[str, str] = ("input", "target"),
    **others: object,
):
    """``input`` and ``target`` as host arrays of one shape (torch and Keras both refuse
    targets of another shape for these losses); on the device path (any argument on the
    device) the arrays themselves, their shapes checked."""
    if _on_device(input, target, *others.values()):
        x_shape = _device_shape(input, names[0])
        t_shape = _device_shape(target, names[1])
        for name, value in others.items():
            if value is not None:
                _device_shape(value, name, scalar_ok=True)
        if t_shape != x_shape:
            raise ValueError(
                f"{names[1]}: expected the shape of {names[0]} {x_shape}, got {t_shape}"
            )
        return input, target
    x = host_array(input, names[0])
    t = host_array(target, names[1])
    if t.shape != x.shape:
        raise ValueError(f"{names[1]}: expected the shape of {names[0]} {x.shape}, got {t.shape}")
    return x, t


def _broadcast_to_input(value: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` broadcast (a view) to the input's ``shape``, as torch multiplies it in place
    into the element losses: it may not have more elements than the input."""
    array = host_array(value, name)
    try:
        fits = np.broadcast_shapes(array.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name}: expected a shape that broadcasts to the shape of input {shape}, "
            f"got {array.shape}"
        )
    if array.size == math.prod(shape):
        # only dimensions of size 1 differ: a plain view, writeable if the array is (a
        # read-only broadcast view would be one more kernel signature for Numba to compile)
        return array.reshape(shape)
    view = np.broadcast_to(array, shape)
    # an empty broadcast counts as contiguous and would reach the kernel read-only
    return view.copy() if view.flags.c_contiguous else view


def _parity(gamma: float) -> float:
    """1 for an even integer ``gamma``, -1 for an odd one, 0 otherwise (see kernels._pow)."""
    if not math.isfinite(gamma) or gamma != math.floor(gamma):
        return 0.0
    return 1.0 if math.fmod(gamma, 2.0) == 0.0 else -1.0


def _class_weight(alpha: float, balance: bool) -> tuple[float, float]:
    """``(a1, a0)`` with ``a1 t + a0 = alpha t + (1 - alpha)(1 - t)``, or ``(0, 1)`` (weight 1)
    without balancing: a runtime weight, so balancing costs no kernel of its own."""
    return (2.0 * alpha - 1.0, 1.0 - alpha) if balance else (0.0, 1.0)


def _check_unit(a: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless every element of ``a`` lies in [0, 1] (NaN does not)."""
    if a.size == 0:
        return
    low, high = np.min(a), np.max(a)  # NaN propagates through both
    if low >= 0 and high <= 1:
        return
    found = "NaN" if np.isnan(low) or np.isnan(high) else f"values from {low} to {high}"
    raise ValueError(
        f"{name}: expected values in [0, 1] (torch's binary_cross_entropy refuses others), "
        f"got {found}"
    )


def _has_nan(loss: object) -> bool:
    """Whether a loss (a scalar, or the element losses) holds a NaN: one read of the losses."""
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.isnan(np.sum(loss)))


def _unit_nan(total: object, x: object, t: object) -> None:
    """A device loss ``total`` (0-d) copied back; if NaN, ``input`` and ``target`` copied back
    too and checked, raising ``ValueError`` for the one outside [0, 1]."""
    from fastloss._cuda import to_host

    with np.errstate(invalid="ignore"):
        if not np.isnan(to_host(total)).any():
            return
    _check_unit(to_host(x), "input")
    _check_unit(to_host(t), "target")


def _bce_device(x, t, weight, reduction, return_grad, out):
    """``binary_cross_entropy`` on the device, with torch's range check (see its docstring)."""
    shape = _device_shape(x, "input")
    if weight is not None:
        _device_weight(weight, shape, "weight")
    arrays = {"input": x, "target": t}
    after = reduction != "none" and weight is None and out is None
    if not after:  # the unweighted sum is NaN exactly when an element is outside [0, 1]
        _unit_nan(_device_run("BCE", arrays, reduction="sum"), x, t)
    result = _device_run(
        "BCE", arrays, reduction=reduction, weight=weight, return_grad=return_grad, out=out
    )
    if after:
        _unit_nan(result[0] if return_grad else result, x, t)
    return result


# --- torch -------------------------------------------------------------------------------------


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    .. math::
        \ell_i = -w_i \left(y_i \max(\log x_i, -100)
                 + (1 - y_i) \max(\log(1 - x_i), -100)\right)

    .. math::
        \frac{\partial \ell_i}{\partial x_i} = w_i \frac{x_i - y_i}{\max((1 - x_i) x_i,
        \epsilon)}

    exactly as torch computes both: the logarithms are clamped at -100, so the loss is finite
    at :math:`x_i \in \{0, 1\}`, and the gradient is torch's formula, not the derivative of
    the clamped loss: with torch's :math:`\epsilon` = float32(1e-12) (also for float64), it is
    about :math:`-y_i \cdot 10^{12}` at :math:`x_i = 0` and :math:`(1 - y_i) \cdot 10^{12}` at
    :math:`x_i = 1`.

    As torch, ``input`` and ``target`` must have the same shape and all their values must lie
    in [0, 1] (NaN included): otherwise ``ValueError``. The check costs no extra pass for
    ``"mean"`` and ``"sum"`` (an element outside [0, 1] makes the loss NaN inside the kernel;
    only a NaN result reads the arrays again to name the culprit); for ``"none"`` it reads the
    element losses once more, and when ``out`` shares memory with ``input`` or ``target`` they
    are checked before the kernel overwrites them. After the ``ValueError`` the contents of
    ``out`` are unspecified.

    The second derivative is that of torch's gradient: :math:`w_i (y_i / x_i^2 + (1 - y_i) /
    (1 - x_i)^2)`, and :math:`w_i / \epsilon` where torch's floor holds.

    On the device the check is the one host synchronisation of these losses: for ``"mean"``
    and ``"sum"`` without ``weight`` or ``out`` the 0-d loss itself is copied back (NaN means
    an element outside [0, 1]); otherwise one more device pass first sums the unweighted
    element losses into a 0-d array, which is copied back. Only when that is NaN are
    ``input`` and ``target`` copied to the host, to name the culprit in the ``ValueError``.

    Parameters
    ----------
    input : array_like
        Probabilities in [0, 1]; NumPy arrays, DLPack (torch CPU tensors, viewed), sequences,
        or device arrays (CuPy, Numba, ``__cuda_array_interface__``).
    target : array_like
        Targets in [0, 1], the shape of ``input``. Integer and bool targets are accepted and
        cast (torch refuses them).
    weight : array_like, optional
        Rescaling weight of each element; any shape that broadcasts to ``input``'s, as torch
        allows (it is broadcast once into a full-size copy, on the device for a device call).
    size_average, reduce : bool, optional
        torch's deprecated reduction flags; they override ``reduction`` when given.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the (weighted) sum by the element count, as torch does.
    return_grad : bool
        Also return the gradient with respect to ``input``.
    return_hess : bool
        Also return the second derivative with respect to ``input``, element by element
        (implies ``return_grad``; see :doc:`losses`, "Second derivatives").
    out : ndarray, optional
        Receives the gradient (``input`` itself is allowed).

    Returns
    -------
    loss : scalar or ndarray
        A NumPy scalar of the compute dtype (a 0-d device array on the device), or an array
        for ``reduction="none"``.
    grad : ndarray
        With ``return_grad=True``, in ``input``'s floating dtype.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.binary_cross_entropy([0.9, 0.2], [1.0, 0.0])), 6)
    0.164252
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    reduction = check_reduction(reduction)
    x, t = _pair("binary_cross_entropy", input, target, weight=weight)
    if _on_device(x, t, weight):
        if return_hess:
            raise NotImplementedError(DEVICE_HESS)
        return _bce_device(x, t, weight, reduction, return_grad, out)
    w = None if weight is None else _broadcast_to_input(weight, x.shape, "weight")
    early = isinstance(out, np.ndarray) and (
        np.may_share_memory(out, x) or np.may_share_memory(out, t)
    )
    if early:
        _check_unit(x, "input")
        _check_unit(t, "target")
    result = _loss(
        ("binary", "BCE"),
        {"input": x, "target": t},
        reduction=reduction,
        weight=w,
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
    )
    if not early and _has_nan(result[0] if isinstance(result, tuple) else result):
        _check_unit(x, "input")
        _check_unit(t, "target")
    return result


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Binary cross-entropy of logits, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    With :math:`p_i` the ``pos_weight`` broadcast to the input (1 without it):

    .. math::
        \ell_i = w_i \left((1 - y_i) x_i + (1 + (p_i - 1) y_i)
                 \left(\log(1 + e^{-|x_i|}) + \max(-x_i, 0)\right)\right)

    .. math::
        \frac{\partial \ell_i}{\partial x_i} = w_i \left((p_i y_i + 1 - y_i)\,
        \sigma(x_i) - p_i y_i\right)

    computed in that overflow-free form: finite and accurate for any finite logit (±1e4
    included), with :math:`\sigma(x)` formed without cancellation. The second derivative is
    :math:`w_i (p_i y_i + 1 - y_i)\, \sigma(x_i) \sigma(-x_i)` (scikit-learn's
    ``HalfBinomialLoss`` for :math:`p_i = 1`).

    Parameters
    ----------
    input : array_like
        Logits.
    target : array_like
        Targets, the shape of ``input`` (``ValueError`` otherwise, as torch). Integer and bool
        targets are accepted and cast (torch refuses them).
    weight : array_like, optional
        Rescaling weight of each element, broadcastable to ``input``.
    size_average, reduce : bool, optional
        torch's deprecated reduction flags; they override ``reduction`` when given.
    reduction : {"mean", "sum", "none"}
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against ``input`` from the last dimension as
        torch does (typically one value per class, shape ``(C,)``). It is broadcast once into
        a full-size copy (on the device for a device call), so it costs one more array read
        per element.
    return_grad : bool
        Also return the gradient with respect to ``input``.
    return_hess : bool
        Also return the second derivative with respect to ``input``, element by element
        (implies ``return_grad``; see :doc:`losses`, "Second derivatives").
    out : ndarray, optional
        Receives the gradient (``input`` itself is allowed).

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        With ``return_grad=True``.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.binary_cross_entropy_with_logits([2.0, -1.0], [1.0, 0.0])), 6)
    0.220095
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    reduction = check_reduction(reduction)
    x, t = _pair(
        "binary_cross_entropy_with_logits", input, target, weight=weight, pos_weight=pos_weight
    )
    if _on_device(x, t, weight, pos_weight):
        if return_hess:
            raise NotImplementedError(DEVICE_HESS)
        shape = _device_shape(x, "input")
        arrays = {"input": x, "target": t}
        name = "BCE_LOGITS"
        if weight is not None:
            _device_weight(weight, shape, "weight")
        if pos_weight is not None:
            _device_weight(pos_weight, shape, "pos_weight")
            arrays["pos_weight"] = pos_weight
            name = "BCE_LOGITS_POS"
        return _device_run(
            name, arrays, reduction=reduction, weight=weight, return_grad=return_grad, out=out
        )
    w = None if weight is None else _broadcast_to_input(weight, x.shape, "weight")
    arrays = {"input": x, "target": t}
    name = "BCE_LOGITS"
    if pos_weight is not None:
        arrays["pos_weight"] = _broadcast_to_input(pos_weight, x.shape, "pos_weight")
        name = "BCE_LOGITS_POS"
    return _loss(
        ("binary", name),
        arrays,
        reduction=reduction,
        weight=w,
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
    )


# --- torchvision -------------------------------------------------------------------------------


def sigmoid_focal_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Sigmoid focal loss (Lin et al., 2017), as ``torchvision.ops.sigmoid_focal_loss``.

    With :math:`s_i = \sigma(x_i)`, :math:`c_i` the binary cross-entropy of the logit
    :math:`x_i` (:func:`binary_cross_entropy_with_logits`), :math:`m_i = 1 - p_{t,i} =
    y_i (1 - s_i) + (1 - y_i) s_i` and :math:`a_i = \alpha y_i + (1 - \alpha)(1 - y_i)`
    (:math:`a_i = 1` for :math:`\alpha < 0`, torchvision's switch):

    .. math::
        \ell_i = a_i\, c_i\, m_i^\gamma, \qquad
        \frac{\partial \ell_i}{\partial x_i} = a_i \left((s_i - y_i)\, m_i^\gamma
        + c_i\, \gamma\, m_i^{\gamma - 1} s_i (1 - s_i)(1 - 2 y_i)\right)

    :math:`1 - s_i` and :math:`m_i` are formed without cancellation, so large logits keep
    their digits where torchvision's ``1 - p_t`` rounds to 0. The second gradient term is
    taken as its limit 0 where :math:`m_i = 0` exactly (a saturated sigmoid; torch's autograd
    gives NaN there for :math:`\gamma < 1`). ``gamma = 2`` uses :math:`m^2` directly; other
    values :math:`\exp(\gamma \log m)`, with ``pow``'s sign for integer exponents. The second
    derivative is exact, its terms in :math:`m'/m` and :math:`m''/m` taken as 0 where
    :math:`m_i = 0`, as in the gradient.

    Parameters
    ----------
    inputs : array_like
        Logits, any shape.
    targets : array_like
        Binary (or soft) labels, the shape of ``inputs``.
    alpha : float
        Weight of the positive class in [0, 1]; negative disables the weighting.
    gamma : float
        Focusing exponent.
    reduction : {"none", "mean", "sum"}
        torchvision's default is ``"none"``.
    return_grad : bool
        Also return the gradient with respect to ``inputs``.
    return_hess : bool
        Also return the second derivative with respect to ``inputs``, element by element
        (implies ``return_grad``; see :doc:`losses`, "Second derivatives").
    out : ndarray, optional
        Receives the gradient (``inputs`` itself is allowed).

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        With ``return_grad=True``.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.sigmoid_focal_loss([2.0, -1.0], [1.0, 0.0], reduction="sum")), 6)
    0.017444
    """
    reduction = check_reduction(reduction)
    alpha = check_option(alpha, "alpha")
    gamma = check_option(gamma, "gamma")
    x, t = _pair("sigmoid_focal_loss", inputs, targets, ("inputs", "targets"))
    return _loss(
        ("binary", "SIGMOID_FOCAL"),
        {"inputs": x, "targets": t},
        reduction=reduction,
        params=(*_class_weight(alpha, alpha >= 0), gamma, _parity(gamma)),
        flags=(gamma == 2.0,),
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
    )


# --- Keras -------------------------------------------------------------------------------------


def _keras_axes(shape: tuple[int, ...], axis: object) -> tuple[int, ...]:
    """``axis`` (an int or a tuple of ints) as non-negative axes of ``shape``; a 0-d input
    takes ``-1`` or ``0`` (torch's mean does) and has no axis to reduce."""
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    ndim = max(len(shape), 1)
    normal = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int | np.integer):
            raise TypeError(f"axis: expected an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis: expected an axis of an input of shape {shape}, got {axis!r}")
        normal.append(int(a) % ndim)
    if len(set(normal)) != len(normal):
        raise ValueError(f"axis: expected distinct axes, got {axis!r}")
    return tuple(normal) if shape else ()


def _keras_call(
    name: str,
    x: np.ndarray,
    t: np.ndarray,
    params: tuple[float, ...],
    flags: tuple[bool, ...],
    axis: object,
    reduction: str,
    return_grad: bool,
    out: object,
    return_hess: bool = False,
):
    """Keras's per-sample mean over ``axis``, then fastloss's reduction over the samples.

    ``"mean"``: the sum of the element losses over their count (the mean of equal-sized
    per-sample means); ``"sum"``: each element loss times ``1 / K`` (``K`` elements per
    sample), summed; ``"none"``: the same scaled element losses summed over ``axis`` (on the
    device for device arrays, in a fixed order).
    """
    device = _on_device(x)
    shape = _device_shape(x, "input") if device else x.shape
    axes = _keras_axes(shape, axis)
    if reduction == "sum" and 0 in axes and _reduction.active():
        raise ValueError(
            f"axis: an Accumulator's chunks are samples along axis 0, which this loss averages "
            f"over (axis={axis!r}, input of shape {shape}); give inputs of shape (samples, ...)"
        )
    per_sample = math.prod(shape[a] for a in axes)
    scale = 1.0 if reduction == "mean" or per_sample == 0 else 1.0 / per_sample
    return_hess = check_option(return_hess, "return_hess", "bool")
    return_grad = check_option(return_grad, "return_grad", "bool") or return_hess
    result = _loss(
        ("binary", name),
        {"input": x, "target": t},
        reduction=reduction,
        params=(*params, scale),
        flags=flags,
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
    )
    loss, grad = result[:2] if return_grad else (result, None)
    if device:
        from fastloss import _cuda

        samples = tuple(n for i, n in enumerate(shape) if i not in axes)
        if per_sample == 0 and reduction != "mean":
            # as below: NaN samples (a NaN sum unless there are none), filled on the device
            nan = reduction == "none" or math.prod(samples) > 0
            loss = _cuda.full(loss, samples if reduction == "none" else (), loss.dtype,
                              np.nan if nan else 0.0)  # fmt: skip
        elif reduction == "none" and axes:
            loss = _cuda.sum_axes(loss, axes)
    elif per_sample == 0 and reduction != "mean":
        # Keras's mean over an empty axis is NaN for every sample (torch's mean)
        samples = tuple(n for i, n in enumerate(x.shape) if i not in axes)
        nan = np.full(samples, np.nan, loss.dtype)
        loss = nan if reduction == "none" else loss.dtype.type(nan.sum())
    elif reduction == "none" and axes:
        loss = np.asarray(np.sum(loss, axis=axes))
    if return_hess:
        return loss, grad, result[2]
    return (loss, grad) if return_grad else loss


def binary_crossentropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int | tuple[int, ...] = -1,
    reduction: str = "mean",
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Binary crossentropy as Keras 3's ``keras.losses.binary_crossentropy`` (``input`` is
    ``y_pred``, ``target`` is ``y_true``).

    With the smoothed target :math:`y'_i = y_i (1 - \lambda) + \lambda / 2` and, for
    probabilities, :math:`\bar x_i = \operatorname{clip}(x_i, \epsilon, 1 - \epsilon)`,
    :math:`\epsilon = 10^{-7}` (Keras's ``epsilon()``, in the input's dtype):

    .. math::
        \ell_i = -y'_i \log \bar x_i - (1 - y'_i) \log(1 - \bar x_i), \qquad
        \frac{\partial \ell_i}{\partial x_i} = \frac{\bar x_i - y'_i}
        {(1 - \bar x_i) \bar x_i} [\epsilon \le x_i \le 1 - \epsilon]

    (the clip passes no gradient outside its range, and all of it at the bounds, as Keras's
    autograd gives); from logits, :math:`\ell_i = (1 - y'_i) x_i + \log(1 + e^{-|x_i|}) +
    \max(-x_i, 0)` and :math:`\partial \ell_i / \partial x_i = \sigma(x_i) - y'_i`. The second
    derivative is :math:`y'_i / \bar x_i^2 + (1 - y'_i) / (1 - \bar x_i)^2` inside the clip
    range and 0 outside it (the clip stops the gradient), :math:`\sigma(x_i) \sigma(-x_i)`
    from logits; times the :math:`1/K` of the per-sample mean.

    Keras averages the element losses over ``axis`` into per-sample losses; ``reduction``
    then acts on those: ``"mean"`` is Keras's ``"sum_over_batch_size"`` (for equal-sized
    samples, the mean over all elements), ``"sum"`` their sum, ``"none"`` returns them (the
    input's shape without ``axis``; this one sums the element losses in a second pass, NumPy's
    on the host, a fixed-order device kernel on the device). An empty batch gives a NaN mean
    (Keras gives 0) and a zero sum; an empty ``axis`` NaN per-sample losses, as Keras's mean
    does.

    Keras on torch hands probabilities to torch's ``binary_cross_entropy``, which refuses
    targets outside [0, 1] and NaN predictions; here the formula is evaluated for any value
    (as Keras's other backends do) and NaN propagates. float64 is computed in float64
    (Keras 3.15 rounds parts of a float64 loss to float32).

    Parameters
    ----------
    input : array_like
        Probabilities, or logits with ``from_logits=True``.
    target : array_like
        Labels, the shape of ``input`` (``ValueError`` otherwise, as Keras); integer and bool
        labels are cast.
    from_logits : bool
    label_smoothing : float
        In [0, 1].
    axis : int or tuple of int
        The axis (axes) averaged into a per-sample loss.
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return the gradient with respect to ``input``.
    return_hess : bool
        Also return the second derivative with respect to ``input``, element by element
        (implies ``return_grad``; see :doc:`losses`, "Second derivatives").
    out : ndarray, optional
        Receives the gradient (``input`` itself is allowed).

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        With ``return_grad=True``, in ``input``'s shape.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import fastloss
    >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
    >>> y_true = [[0, 1], [0, 0]]
    >>> fastloss.binary_crossentropy(y_pred, y_true, reduction="none").round(3)
    array([0.916, 0.714])
    """
    reduction = check_reduction(reduction)
    smoothing = check_option(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    from_logits = check_option(from_logits, "from_logits", "bool")
    x, t = _pair("binary_crossentropy", input, target)
    params = (KERAS_EPSILON, 1.0 - KERAS_EPSILON, 1.0 - smoothing, 0.5 * smoothing)
    return _keras_call(
        "KERAS_BCE", x, t, params, (from_logits,), axis, reduction, return_grad, out, return_hess
    )


def binary_focal_crossentropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int | tuple[int, ...] = -1,
    reduction: str = "mean",
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Binary focal crossentropy as Keras 3's ``keras.losses.binary_focal_crossentropy``
    (``input`` is ``y_pred``, ``target`` is ``y_true``).

    With :math:`p_i = x_i` (or :math:`\sigma(x_i)` from logits: Keras forms the probability
    first), the smoothed target :math:`y'_i` and the clipped-probability crossentropy
    :math:`b_i` of :func:`binary_crossentropy`, :math:`m_i = 1 - p_{t,i} = y'_i (1 - p_i) +
    (1 - y'_i) p_i` and, with class balancing, :math:`w_i = \alpha y'_i + (1 - \alpha)
    (1 - y'_i)` (else 1):

    .. math::
        \ell_i = w_i\, m_i^\gamma\, b_i, \qquad
        \frac{\partial \ell_i}{\partial p_i} = w_i \left(m_i^\gamma
        \frac{\partial b_i}{\partial p_i} + b_i\, \gamma\, m_i^{\gamma - 1} (1 - 2 y'_i)\right)

    times :math:`p_i (1 - p_i)` from logits. :math:`\partial b_i / \partial p_i` is 0 outside
    the clip range, :math:`\gamma m^{\gamma - 1}` is torch's ``pow`` gradient (0 for
    :math:`\gamma = 0`, inf at :math:`m = 0` for :math:`\gamma < 1`). :math:`1 - p_i` is formed
    without cancellation from logits, so saturated logits keep small nonzero values where
    Keras's rounded ``1 - p_t`` is 0 (and its gradient NaN for :math:`\gamma < 1`). The second
    derivative differentiates that gradient: outside the clip range only the focal factor
    varies (``pow``'s limits of :math:`m^{\gamma - 2}` at :math:`m = 0` on probabilities, the
    ratios :math:`m'/m, m''/m` taken as 0 there from logits).

    Reductions over ``axis`` and the samples, empty inputs, NaN and float64 as
    :func:`binary_crossentropy`. Keras converts ``gamma`` to a float32 tensor, so for a float64
    input and a ``gamma`` that float32 cannot hold (0.3) its exponent differs from the one used
    here (``gamma`` itself) by a float32 rounding.

    Parameters
    ----------
    input, target : array_like
        ``y_pred`` (probabilities, or logits with ``from_logits=True``) and ``y_true``, of one
        shape.
    apply_class_balancing : bool
        Weight the classes by ``alpha`` and ``1 - alpha``.
    alpha : float
    gamma : float
        Focusing exponent (``gamma = 2`` uses :math:`m^2` directly).
    from_logits : bool
    label_smoothing : float
        In [0, 1].
    axis : int or tuple of int
    reduction : {"mean", "sum", "none"}
    return_grad : bool
    return_hess : bool
    out : ndarray, optional

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        With ``return_grad=True``.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import fastloss
    >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
    >>> y_true = [[0, 1], [0, 0]]
    >>> fastloss.binary_focal_crossentropy(y_pred, y_true, reduction="none").round(3)
    array([0.33 , 0.206])
    """
    reduction = check_reduction(reduction)
    smoothing = check_option(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    alpha = check_option(alpha, "alpha")
    gamma = check_option(gamma, "gamma")
    balance = check_option(apply_class_balancing, "apply_class_balancing", "bool")
    from_logits = check_option(from_logits, "from_logits", "bool")
    x, t = _pair("binary_focal_crossentropy", input, target)
    # the clip bounds in the compute dtype, and their logarithms (the from-logits path)
    dtype = compute_dtype(_device_dtype(x) if _on_device(x) else x.dtype, "input")
    lo, hi = (float(dtype.type(v)) for v in (KERAS_EPSILON, 1.0 - KERAS_EPSILON))
    params = (
        lo,
        hi,
        math.log(lo),
        math.log1p(-lo),
        math.log(hi),
        math.log1p(-hi),
        1.0 - smoothing,
        0.5 * smoothing,
        *_class_weight(alpha, balance),
        gamma,
        _parity(gamma),
    )
    flags = (from_logits, gamma == 2.0)
    return _keras_call(
        "KERAS_FOCAL", x, t, params, flags, axis, reduction, return_grad, out, return_hess
    )


# --- inputs for the registry (demo job, benchmarks) -------------------------------------------


def probability_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    """Typical inputs of the probability losses: predictions in (0, 1), 0/1 targets."""
    p = rng.random(n, dtype=np.float32) * np.float32(0.98) + np.float32(0.01)
    return {
        "input": p.astype(dtype, copy=False),
        "target": (rng.random(n, dtype=np.float32) < 0.5).astype(dtype),
    }


def logit_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    """Typical inputs of the logit losses: standard normal logits (times 2), 0/1 targets."""
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(2.0)
    return {
        "input": x.astype(dtype, copy=False),
        "target": (rng.random(n, dtype=np.float32) < 0.5).astype(dtype),
    }


def focal_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    """Typical inputs of ``sigmoid_focal_loss`` (its arguments are ``inputs``, ``targets``)."""
    inputs = logit_inputs(rng, n, dtype)
    return {"inputs": inputs["input"], "targets": inputs["target"]}
