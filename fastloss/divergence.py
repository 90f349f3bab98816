"""The Kullback-Leibler divergence, in torch's dialect.

``kl_div`` keeps ``torch.nn.functional.kl_div``'s name, argument order, defaults and semantics,
``"batchmean"`` and the warning for ``"mean"`` included, and, as every fastloss loss, takes
keyword-only ``return_grad``, ``return_hess`` and ``out``. Device arrays (CuPy, Numba's,
anything with ``__cuda_array_interface__``) run the CUDA kernels generated from the same
declaration, with the results left on the device (``return_hess`` is host-only for now).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fastloss._intake import (
    check_option,
    check_reduction,
    host_array,
    is_device_array,
    legacy_reduction,
)
from fastloss.regression import _loss

ArrayLike = Any

# torch.nn.functional.kl_div's warning for reduction="mean", word for word (torch 2.x).
MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
    *,
    return_grad: bool = False,
    return_hess: bool = False,
    out: np.ndarray | None = None,
):
    r"""Kullback-Leibler divergence, as ``torch.nn.functional.kl_div``.

    ``input`` holds log-probabilities :math:`x_i`; ``target`` probabilities :math:`y_i` (or
    their logarithms with ``log_target=True``):

    .. math::
        \ell_i = y_i \log y_i - y_i x_i, \qquad
        \frac{\partial \ell_i}{\partial x_i} = -y_i

    with :math:`y_i \log y_i = 0` at :math:`y_i = 0` (torch's ``xlogy``); with
    ``log_target``:

    .. math::
        \ell_i = e^{y_i} (y_i - x_i), \qquad \frac{\partial \ell_i}{\partial x_i} = -e^{y_i}

    ``reduction="batchmean"`` is the sum divided by ``input.shape[0]`` (the KL divergence of
    a batch of distributions; a 0-d input is not divided, as in torch, and an empty batch
    gives NaN); ``"mean"`` divides by the element count and warns, as torch does, that it is
    not the divergence. The ``1 / input.shape[0]`` of ``"batchmean"`` is applied to each
    element's loss and gradient inside the single pass. The loss is linear in ``input``: with
    ``return_hess=True`` the second derivative is 0. ``target`` broadcasts against
    ``input`` (as in torch, without a warning); the gradient comes back in ``input``'s shape.
    NaN propagates; integer and bool targets are accepted and cast (torch refuses them).

    With device arrays the loss (a 0-d device array for every reduction but ``"none"``) and
    the gradient stay on the device and nothing waits for it (``"batchmean"`` of an empty batch
    is a device NaN too). ``input`` and ``target`` must then both be device arrays (a real
    scalar ``target`` is broadcast): a host array raises ``TypeError``, it is not copied over.

    Parameters
    ----------
    input : array_like
        Log-probabilities. NumPy arrays, DLPack (torch CPU tensors, viewed), sequences, or
        device arrays.
    target : array_like
        Probabilities (or log-probabilities with ``log_target=True``), broadcastable against
        ``input``.
    size_average, reduce : bool, optional
        torch's deprecated reduction flags; they override ``reduction`` when given.
    reduction : {"mean", "batchmean", "sum", "none"}
    log_target : bool
        ``target`` holds log-probabilities.
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
        With ``return_grad=True``.
    hess : ndarray
        With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative of
        the loss (of the sum of the losses for ``"none"``) with respect to the input, in its
        shape and dtype.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x = np.log([[0.25, 0.75], [0.5, 0.5]])
    >>> round(float(fastloss.kl_div(x, [[0.5, 0.5], [0.5, 0.5]], reduction="batchmean")), 6)
    0.071921
    """
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn(MEAN_WARNING, UserWarning, stacklevel=2)
    reduction = check_reduction(reduction, ("none", "batchmean", "mean", "sum"))
    device = is_device_array(input) or is_device_array(target)
    if device:
        if not is_device_array(input):
            raise TypeError(
                "input: expected a device array (CuPy, Numba or __cuda_array_interface__) like "
                f"target, got {type(input).__module__}.{type(input).__name__}; host arrays are "
                "not copied to the device, move it there first"
            )
        x = input
        shape = getattr(x, "shape", None)
        if shape is None:
            shape = x.__cuda_array_interface__["shape"]
        shape = tuple(int(s) for s in shape)
    else:
        x = host_array(input, "input")
        shape = x.shape
    scale, batch = 1.0, None
    if reduction == "batchmean" and device:
        # on the device the 1 / batch is applied to each element inside the pass; an empty
        # batch is the mean of nothing, 0 / 0, the device NaN
        reduction = "mean" if shape and not shape[0] else "sum"
        scale = 1.0 / shape[0] if shape and shape[0] else 1.0
    elif reduction == "batchmean":
        # the sum over the batch size (a 0-d input is not divided, as in torch)
        reduction, batch = "mean", (shape[0] if shape else 1)
    result = _loss(
        ("divergence", "KL_DIV"),
        {"input": x, "target": target},
        reduction=reduction,
        params=(scale,),
        flags=(check_option(log_target, "log_target", "bool"),),
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
        denominator=batch,
    )
    return result


def log_probability_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    """Typical inputs of ``kl_div`` for the registry: log-probabilities and probabilities."""
    p = rng.random(n, dtype=np.float32) + np.float32(0.01)
    q = rng.random(n, dtype=np.float32)
    return {
        "input": np.log(p / p.sum()).astype(dtype),
        "target": (q / q.sum()).astype(dtype),
    }
