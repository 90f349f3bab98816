"""The elementwise plan's intake, and the regression losses that do more than resolve options.

:func:`_loss` is the one intake of every elementwise loss (the declared ones of
:mod:`fastloss.declared` and the handwritten ones): arrays, dtypes, shapes, then the CPU plan
(:mod:`fastloss._elementwise`) or the device plan (:mod:`fastloss._cuda`).
``gaussian_nll_loss`` keeps ``torch.nn.functional``'s name, argument order, defaults and
semantics; ``rmse_loss`` is computed as Keras's ``RootMeanSquaredError`` computes it. The other
regression losses (``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``,
``poisson_nll_loss``, ``log_cosh_loss``, ``msle_loss``, ``mape_loss``) are declared in
:data:`fastloss.registry.LOSSES`.

Every function takes keyword-only ``return_grad`` and ``out``: with ``return_grad=True`` it
returns ``(loss, grad)``, the gradient of the returned loss with respect to ``input`` (of the
sum of the losses for ``reduction="none"``) from the same single pass; ``out`` receives the
gradient and may be ``input`` itself. ``return_hess=True`` (which implies ``return_grad``)
returns ``(loss, grad, hess)``, ``hess`` the second derivative of the same loss with respect to
``input``, element by element, with scikit-learn's conventions at kinks (docs/losses.md,
"Second derivatives"); device arrays raise ``NotImplementedError`` for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastloss import _elementwise
from fastloss._intake import (
    check_cast,
    check_option,
    check_reduction,
    compute_dtype,
    host_array,
    is_device_array,
    split_out,
    warn_target_size,
)

ArrayLike = Any

# Keras's backend.epsilon(): a float32 tensor in Keras's computation, so its float32 value.
KERAS_EPSILON = float(np.float32(1e-7))

DEVICE_HESS = (
    "return_hess: second derivatives are computed on the CPU only; device arrays (CuPy, "
    "Numba, __cuda_array_interface__) support return_grad, not return_hess yet"
)


def _grad_dtype(x: np.ndarray, dtype: np.dtype) -> np.dtype:
    """Gradients come back in the input's floating dtype (native byte order)."""
    return x.dtype.newbyteorder("=") if x.dtype.kind == "f" else dtype


def _device(*arrays: object) -> bool:
    return any(is_device_array(a) for a in arrays)


def _loss(
    family_spec: tuple[str, str],
    arrays: dict[str, object],
    *,
    reduction: str,
    params: tuple[float, ...] = (),
    flags: tuple[bool, ...] = (),
    weight: object = None,
    mean_by_weight: bool = False,
    warn_shape: bool = False,
    return_grad: bool = False,
    out: object = None,
    denominator: float | None = None,
    return_hess: bool = False,
):
    """Shared intake of the elementwise regression losses: arrays, dtypes, shapes, launch.

    ``denominator`` replaces the element count of a mean (a batch mean's batch size; host
    arrays only). ``return_hess`` implies ``return_grad`` and adds the second derivative with
    respect to the first array: ``(loss, grad, hess)``."""
    reduction = check_reduction(reduction)
    return_grad = check_option(return_grad, "return_grad", "bool")
    return_hess = check_option(return_hess, "return_hess", "bool")
    return_grad = return_grad or return_hess
    kernel_spec = _elementwise.spec(*family_spec)
    if weight is None and out is None and denominator is None:
        result = _elementwise.run_plain(
            kernel_spec, list(arrays.values()), params, flags, reduction, return_grad, return_hess
        )
        if result is not None:
            return result
    names = list(arrays)
    if _device(*arrays.values(), weight):
        from fastloss import _cuda

        if return_hess:
            raise NotImplementedError(DEVICE_HESS)

        shapes = [tuple(getattr(a, "shape", ())) for a in arrays.values()]
        if warn_shape and shapes[1] != shapes[0]:
            warn_target_size(shapes[0], shapes[1])

        return _cuda.run(
            kernel_spec,
            list(arrays.values()),
            names,
            params=params,
            flags=flags,
            reduction=reduction,
            weight=weight,
            mean_by_weight=mean_by_weight,
            return_grad=return_grad,
            out=out,
        )
    host = [host_array(a, name) for name, a in arrays.items()]
    dtype = compute_dtype(host[0].dtype, names[0])
    grad_dtypes = [_grad_dtype(host[i], dtype) for i in kernel_spec.grads]
    host = [check_cast(a, dtype, name) for a, name in zip(host, names, strict=True)]
    if warn_shape and host[1].shape != host[0].shape:
        warn_target_size(host[0].shape, host[1].shape)
    if weight is not None:
        weight = check_cast(host_array(weight, "weight"), dtype, "weight")
        if weight.shape != host[0].shape:  # torch's rule; it then broadcasts as input does
            raise ValueError(
                f"weight: expected the shape of input {host[0].shape}, got {weight.shape}"
            )
    return _elementwise.run(
        kernel_spec,
        host,
        names,
        params=params,
        flags=flags,
        reduction=reduction,
        weight=weight,
        mean_by_weight=mean_by_weight,
        return_grad=return_grad,
        out=out,
        grad_dtypes=grad_dtypes,
        denominator=denominator,
        return_hess=return_hess,
    )


def _gaussian_var(var: object, input_shape: tuple[int, ...]) -> object:
    """torch's shape rules for ``var``: the input's shape, that shape without its last
    dimension (unsqueezed), or one broadcast dimension of size 1."""
    shape = tuple(var.shape)
    if shape == input_shape:
        return var
    if shape == input_shape[:-1]:
        return var.reshape(shape + (1,))
    mismatched = [v for i, v in zip(input_shape, shape, strict=False) if i != v]
    if len(shape) == len(input_shape) and sum(mismatched) == 1:
        return var
    raise ValueError(
        f"var: expected the shape of input {input_shape}, that shape without its "
        f"last dimension, or one dimension of size 1; got {shape}"
    )


def _check_var(var: np.ndarray) -> None:
    """torch's negative-variance check; fmin skips NaN (as torch's ``any(var < 0)`` does) and
    allocates nothing."""
    if var.dtype.kind in "fiub" and var.size and np.fmin.reduce(var, axis=None) < 0:
        raise ValueError("var: expected variances >= 0, got negative entries")


def _check_device_var(total: object, var: object) -> None:
    """The check on the device: the 0-d loss ``total`` copied back (one synchronisation) and,
    only where it is NaN, ``var`` too."""
    from fastloss._cuda import to_host

    with np.errstate(invalid="ignore"):
        if np.isnan(to_host(total)).any():
            _check_var(to_host(var))


def gaussian_nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    var: ArrayLike | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | tuple | None = None,
):
    r"""Gaussian negative log likelihood, as ``torch.nn.functional.gaussian_nll_loss``.

    With :math:`v_i = \max(\sigma^2_i, \varepsilon)`:

    .. math::
        \ell_i = \tfrac12 \left(\log v_i + \frac{(x_i - y_i)^2}{v_i}\right)
                 \; [+\, \tfrac12 \log 2\pi \text{ if full}]

    .. math::
        \frac{\partial \ell_i}{\partial x_i} = \frac{x_i - y_i}{v_i}, \qquad
        \frac{\partial \ell_i}{\partial \sigma^2_i} = \tfrac12 \left(\frac{1}{v_i}
        - \frac{(x_i - y_i)^2}{v_i^2}\right)

    As in torch the clamp is not differentiated, ``var`` may be a float, the input's shape,
    that shape without its last dimension, or have one dimension of size 1 (homoscedastic);
    a negative variance raises ``ValueError`` (on the device at the cost of one synchronisation,
    the loss read back; ``var`` too only where the loss is NaN). With ``return_grad=True`` returns
    ``(loss, (grad_input, grad_var))``; ``out`` is ``None``, one array (for ``input``'s
    gradient) or a pair. A float ``var`` has no gradient (``None``); it is passed to the
    kernel as a number, so it costs no array of the input's size. With ``return_hess=True``
    returns ``(loss, (grad_input, grad_var), hess)``, ``hess`` the second derivative with
    respect to ``input`` only: :math:`1 / v_i`.

    Examples
    --------
    >>> import fastloss
    >>> round(float(fastloss.gaussian_nll_loss([0.0, 1.0], [0.5, 0.0], [1.0, 2.0])), 6)
    0.360787
    """
    reduction = check_reduction(reduction)
    eps = check_option(eps, "eps")
    full = check_option(full, "full", "bool")
    return_grad = check_option(return_grad, "return_grad", "bool")
    return_hess = check_option(return_hess, "return_hess", "bool")
    return_grad = return_grad or return_hess
    scalar_var = isinstance(var, int | float) and not isinstance(var, bool)
    if scalar_var:
        if var < 0:
            raise ValueError(f"var: expected variances >= 0, got {var!r}")
        # a kernel parameter: no variance array, no variance gradient (torch gives none)
        out = split_out(out, return_grad, 2)[0]
        result = _loss(
            ("regression", "GAUSSIAN_NLL_SCALAR_VAR"),
            {"input": input, "target": target},
            reduction=reduction,
            params=(float(var), eps),
            flags=(full,),
            return_grad=return_grad,
            return_hess=return_hess,
            out=out,
        )
        if return_hess:
            return result[0], (result[1], None), result[2]
        return (result[0], (result[1], None)) if return_grad else result
    device = _device(input, target, var)
    if device and return_hess:
        raise NotImplementedError(DEVICE_HESS)
    var_shape = None
    if not device:
        input = host_array(input, "input")
        var = host_array(var, "var")
        var_shape = var.shape
        var = _gaussian_var(var, input.shape)
        _check_var(var)
    else:
        var_shape = tuple(var.shape)
        var = _gaussian_var(var, tuple(getattr(input, "shape", ())))
    unsqueezed = var_shape is not None and tuple(var.shape) != var_shape
    var_out = None
    if unsqueezed and isinstance(out, tuple | list) and len(out) == 2 and out[1] is not None:
        var_out = out[1]
        if tuple(var_out.shape) != var_shape:
            raise ValueError(f"out[1]: expected shape {var_shape}, got {tuple(var_out.shape)}")
        out = (out[0], var_out[..., None])  # a view: the kernel writes into the caller's array
    arrays = {"input": input, "target": target, "var": var}
    options = {"params": (eps,), "flags": (full,)}
    # The device path's variance check: a negative var makes the loss NaN (see the kernel), so
    # a NaN sum copies var back and checks it, before any out= array is written.
    after = device and reduction != "none" and out is None
    if device and not after:
        _check_device_var(
            _loss(("regression", "GAUSSIAN_NLL"), arrays, reduction="sum", **options), var
        )
    result = _loss(
        ("regression", "GAUSSIAN_NLL"),
        arrays,
        reduction=reduction,
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
        **options,
    )
    if after:
        _check_device_var(result[0] if return_grad else result, var)
    if not return_grad:
        return result
    loss, (grad_input, grad_var) = result[:2]
    if unsqueezed:
        # torch gives var.grad in var's own shape
        grad_var = var_out if var_out is not None else grad_var.reshape(var_shape)
    if return_hess:
        return loss, (grad_input, grad_var), result[2]
    return loss, (grad_input, grad_var)


def rmse_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: str = "mean",
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Root mean squared error, as Keras's ``RootMeanSquaredError`` computes it.

    .. math::
        L = \sqrt{\tfrac1n \textstyle\sum_i (x_i - y_i)^2}, \qquad
        \frac{\partial L}{\partial x_i} = \frac{x_i - y_i}{n L}

    ``reduction="sum"`` gives :math:`\sqrt{\sum_i (x_i - y_i)^2}` (the Euclidean distance)
    and ``"none"`` the element roots :math:`|x_i - y_i|`. The gradient at :math:`L = 0` is
    NaN, as the autograd of ``sqrt(mse_loss(...))`` gives.

    ``L`` is not a sum of element losses; ``return_hess=True`` gives the exact diagonal of its
    Hessian, from the reduced total and the gradient: with :math:`c = n` for ``"mean"``
    (1 for ``"sum"``) and :math:`g_i` the gradient,

    .. math::
        \frac{\partial^2 L}{\partial x_i^2} = \frac{1}{c L} - \frac{g_i^2}{L}

    (times the number of target elements an input element meets, where ``input`` broadcasts);
    NaN at :math:`L = 0`. ``"none"`` is :func:`l1_loss`'s (1 everywhere).

    Examples
    --------
    >>> import fastloss
    >>> float(fastloss.rmse_loss([1.0, 2.0], [1.0, 4.0]))
    1.4142135623730951
    """
    reduction = check_reduction(reduction)
    return_grad = check_option(return_grad, "return_grad", "bool")
    return_hess = check_option(return_hess, "return_hess", "bool")
    return_grad = return_grad or return_hess
    if reduction == "none":
        return _loss(
            ("regression", "L1"), {"input": input, "target": target}, reduction="none",
            warn_shape=True, return_grad=return_grad, return_hess=return_hess, out=out,
        )  # fmt: skip
    device = _device(input, target)
    if return_hess and device:
        raise NotImplementedError(DEVICE_HESS)
    copies = 1.0  # target elements per input element, for the Hessian
    if return_grad and not device:
        x = host_array(input, "input")
        if return_hess:
            target = host_array(target, "target")
            copies = math.prod(np.broadcast_shapes(x.shape, target.shape)) / max(x.size, 1)
        if x.dtype == np.float16:
            # dS/dx = 2 d can overflow float16 before the 1 / (2 sqrt(S)) scale brings it
            # back: compute in float32, round the final gradient once.
            if out is not None:
                _elementwise.check_out(out, x.shape, x.dtype, "out")
            root, grad, *hess = rmse_loss(
                x.astype(np.float32), target, reduction=reduction, return_grad=True,
                return_hess=return_hess,
            )  # fmt: skip
            if out is None:
                grad = grad.astype(np.float16)
            else:
                np.copyto(out, grad, casting="same_kind")
                grad = out
            return (root, grad, hess[0].astype(np.float16)) if return_hess else (root, grad)
    result = _loss(
        ("regression", "MSE"), {"input": input, "target": target}, reduction=reduction,
        warn_shape=True, return_grad=return_grad, out=out,
    )  # fmt: skip
    if not return_grad:
        return _sqrt(result)
    squared, grad = result
    root = _sqrt(squared)
    if isinstance(root, np.generic):
        with np.errstate(divide="ignore", invalid="ignore"):
            # d sqrt(S)/dx = dS/dx / (2 sqrt(S)); the kernel wrote dS/dx.
            grad *= grad.dtype.type(0.5) / grad.dtype.type(root)
    else:
        _cupy().asarray(grad).__imul__(0.5 / root)  # on the device, no synchronisation
    if not return_hess:
        return root, grad
    # L = sqrt(S / c), g = d / (c L): d2L/dx2 = copies / (c L) - g**2 / L
    count = grad.size * copies if reduction == "mean" else 1.0
    kind = grad.dtype.type
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hess = (kind(copies / count if count else math.inf) - grad * grad) / kind(root)
    return root, grad, hess


def _cupy():
    try:
        import cupy
    except ImportError:
        raise TypeError(
            "rmse_loss: device arrays need CuPy for the square root (pip install 'fastloss[gpu]')"
        ) from None
    return cupy


def _sqrt(value):
    """Square root of a loss: a NumPy scalar, or a 0-d device array kept on the device."""
    if isinstance(value, np.generic):
        return type(value)(np.sqrt(value))
    if isinstance(value, np.ndarray):
        return np.sqrt(value)
    return _cupy().sqrt(_cupy().asarray(value))
