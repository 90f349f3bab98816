"""Losses of pairs and triplets of embeddings: ``cosine_embedding_loss``,
``triplet_margin_loss``, with torch's semantics.

Each row of the inputs (a sample's embedding of ``D`` values) gives one loss; the rows' losses
are float64 and reduced under the reduction contract. Both run on the row-kernel factory:
NumPy (and other host) inputs on its CPU kernels, device arrays (CuPy, Numba's, anything with
``__cuda_array_interface__``) on its CUDA kernels (:mod:`fastloss._cuda_rows`), the loss and
the gradients then staying on the device.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastloss import _intake, _rows
from fastloss.regression import _grad_dtype


def _kernels():
    from fastloss.kernels import pairwise

    return pairwise


def _layout(arrays: list, names: list[str]):
    """The checks of the row inputs (NumPy arrays or device operands: anything with ``dtype``
    and ``shape``): floating, all 1-D ``(D,)`` or all 2-D ``(N, D)``, one shape. Returns the
    batch shape (``()`` for 1-D inputs), the compute dtype and each input's gradient dtype."""
    for x, name in zip(arrays, names, strict=True):
        if x.dtype.kind != "f":
            raise _intake.unsupported_dtype(name, x.dtype, "a floating dtype")
    dims = [len(x.shape) for x in arrays]
    if len(set(dims)) != 1 or dims[0] not in (1, 2):
        shown = ", ".join(f"{n} {d}-D" for n, d in zip(names, dims, strict=True))
        raise ValueError(f"{', '.join(names)}: expected arrays all 1-D (D,) or all 2-D (N, D), "
                         f"got {shown}")  # fmt: skip
    shapes = {tuple(x.shape) for x in arrays}
    if len(shapes) != 1:
        shown = ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, arrays, strict=True))
        raise ValueError(f"{', '.join(names)}: expected the same shape, got {shown}")
    dtype = _intake.compute_dtype(np.result_type(*[x.dtype for x in arrays]), names[0])
    grad_dtypes = [_grad_dtype(x, dtype) for x in arrays]
    return tuple(arrays[0].shape[:-1]), dtype, grad_dtypes


def _embeddings(arrays: list[object], names: list[str]) -> tuple[list[_rows.Rows], tuple]:
    """The host inputs laid out as rows (:class:`fastloss._rows.Rows`: C-contiguous ``(N, D)``
    matrices of one compute dtype), with the batch shape (``()`` for 1-D inputs)."""
    hosts = [_intake.host_array(a, n) for a, n in zip(arrays, names, strict=True)]
    batch_shape, dtype, grad_dtypes = _layout(hosts, names)
    layout = zip(hosts, grad_dtypes, names, strict=True)
    return [_rows.Rows(x, dtype, d, name=n) for x, d, n in layout], batch_shape


def _on_device(*values: object) -> bool:
    return any(_intake.is_device_array(v) for v in values)


def _device_embeddings(arrays: list[object], names: list[str]):
    """The device inputs as operands of :mod:`fastloss._cuda_rows`, with :func:`_layout`'s
    batch shape, compute dtype and gradient dtypes (TypeError for a host array among them)."""
    from fastloss import _cuda_rows

    ops = _cuda_rows.operands(arrays, names)
    return ops, *_layout(ops, names)


def _check_target(y, batch_shape: tuple[int, ...]) -> None:
    """cosine_embedding_loss's ``target`` (an array or a device operand): real, one per row."""
    if y.dtype.kind not in "fiub":
        raise _intake.unsupported_dtype("target", y.dtype, "a numeric dtype")
    if tuple(y.shape) != batch_shape:
        expected = "a scalar" if batch_shape == () else f"shape {batch_shape}"
        raise ValueError(
            f"target: expected {expected} (one per row of input1), got {tuple(y.shape)}"
        )


def cosine_embedding_loss(
    input1: ArrayLike,
    input2: ArrayLike,
    target: ArrayLike,
    margin: float = 0.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    out: object = None,
):
    r"""Cosine embedding loss of pairs of rows, as torch's ``F.cosine_embedding_loss``.

    .. math::

        \cos_n = \frac{x_{1n} \cdot x_{2n}}{\sqrt{(\lVert x_{1n}\rVert^2 + \epsilon)
        (\lVert x_{2n}\rVert^2 + \epsilon)}}, \qquad
        \ell_n = \begin{cases} 1 - \cos_n & y_n = 1 \\ \max(0, \cos_n - \text{margin}) &
        y_n = -1 \\ 0 & \text{otherwise} \end{cases}

    with torch's :math:`\epsilon = 10^{-12}`. Gradient (rows with :math:`y_n = 1`, or
    :math:`y_n = -1` and :math:`\cos_n \ge` margin, with sign :math:`s = -1` and :math:`+1`):

    .. math::

        \frac{\partial \ell_n}{\partial x_{1n}} = s \left(\frac{x_{2n}}{d_n} -
        \frac{\cos_n\, x_{1n}}{\lVert x_{1n}\rVert^2 + \epsilon}\right), \qquad
        d_n = \sqrt{(\lVert x_{1n}\rVert^2 + \epsilon)(\lVert x_{2n}\rVert^2 + \epsilon)}

    and symmetrically for :math:`x_{2n}`; 0 for the other rows.

    Parameters
    ----------
    input1, input2 : array_like
        ``(N, D)`` or ``(D,)``, the same shape, floating.
    target : array_like
        ``(N,)`` (or a scalar for 1-D inputs): 1 for a similar pair, -1 for a dissimilar one.
    margin : float
        Between -1 and 1; torch suggests 0 to 0.5.
    size_average, reduce : bool, optional
        torch's deprecated pair, resolved as torch resolves it.
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return ``(grad1, grad2)``, the gradients with respect to ``input1`` and
        ``input2``.
    out : array or tuple of (array or None), optional
        Receives the gradients (an array: ``grad1``'s); may be the inputs themselves.

    Returns
    -------
    loss or (loss, (grad1, grad2))

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x1 = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> x2 = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> print(f"{fastloss.cosine_embedding_loss(x1, x2, np.array([1, -1])):.6f}")
    0.100000
    """
    reduction = _intake.check_reduction(_intake.legacy_reduction(size_average, reduce, reduction))
    margin = _intake.check_option(margin, "margin")
    _intake.check_option(return_grad, "return_grad", "bool")
    spec = _kernels().COSINE_EMBEDDING
    names = ["input1", "input2"]
    if _on_device(input1, input2, target):  # CuPy or any __cuda_array_interface__: CUDA kernels
        from fastloss import _cuda_rows

        ops, batch_shape, dtype, grad_dtypes = _device_embeddings([input1, input2], names)
        (y,) = _cuda_rows.operands([target], ["target"])
        _check_target(y, batch_shape)
        return _cuda_rows.run(
            spec, ops, [y], [margin], (), reduction, return_grad, batch_shape, dtype,
            grad_dtypes, out,
        )  # fmt: skip
    inputs, batch_shape = _embeddings([input1, input2], names)
    y = _intake.host_array(target, "target")
    _check_target(y, batch_shape)
    rows = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    return _rows.run(spec, inputs, [rows], [margin], (), reduction, return_grad, out)


def triplet_margin_loss(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    return_grad: bool = False,
    out: object = None,
):
    r"""Triplet margin loss, as ``torch.nn.functional.triplet_margin_loss``.

    .. math::

        \ell_n = \max(0,\ \text{margin} + d(a_n, p_n) - d(a_n, n_n)), \qquad
        d(x, y) = \lVert x - y + \epsilon \rVert_p

    (torch's ``pairwise_distance``: ``eps`` is added to the difference, not the norm). With
    ``swap``, :math:`d(a_n, n_n)` is replaced by :math:`\min(d(a_n, n_n), d(p_n, n_n))` (the
    distance swap of Balntas et al.). Gradient, where the hinge is active (its argument
    :math:`\ge 0`): with :math:`v = x - y + \epsilon`,
    :math:`\partial d / \partial x = \operatorname{sgn}(v)|v|^{p-1} / d^{p-1}` (``v / d`` for
    ``p = 2``, 0 where :math:`d = 0`, as torch's norm), signed by each distance's role;
    ``min``'s gradient goes to the smaller distance, half to each on a tie, as torch's.

    Parameters
    ----------
    anchor, positive, negative : array_like
        ``(N, D)`` or ``(D,)``, the same shape, floating.
    margin : float
    p : float
        The norm's degree, positive and finite.
    eps : float
        Added to each difference before the norm.
    swap : bool
        Use the distance swap.
    size_average, reduce : bool, optional
        torch's deprecated pair.
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return ``(grad_anchor, grad_positive, grad_negative)``.
    out : array or tuple of (array or None), optional
        Receives the gradients (an array: ``grad_anchor``'s); may be the inputs themselves.

    Returns
    -------
    loss or (loss, (grad_anchor, grad_positive, grad_negative))

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> anchor = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> positive = np.array([[0.5, 0.0], [1.0, 2.0]])
    >>> negative = np.array([[1.0, 1.0], [0.0, 1.5]])
    >>> print(f"{fastloss.triplet_margin_loss(anchor, positive, negative):.6f}")
    0.483876
    """
    reduction = _intake.check_reduction(_intake.legacy_reduction(size_average, reduce, reduction))
    margin = _intake.check_option(margin, "margin")
    p = _intake.check_option(p, "p", low=0.0, strict=True)
    eps = _intake.check_option(eps, "eps")
    swap = _intake.check_option(swap, "swap", "bool")
    _intake.check_option(return_grad, "return_grad", "bool")
    spec = _kernels().TRIPLET_MARGIN
    names = ["anchor", "positive", "negative"]
    arrays = [anchor, positive, negative]
    flags = (swap, p == 1.0, p == 2.0)
    if _on_device(*arrays):  # CuPy or any __cuda_array_interface__: CUDA kernels
        from fastloss import _cuda_rows

        ops, batch_shape, dtype, grad_dtypes = _device_embeddings(arrays, names)
        return _cuda_rows.run(
            spec, ops, [], [margin, p, eps], flags, reduction, return_grad, batch_shape, dtype,
            grad_dtypes, out,
        )  # fmt: skip
    inputs, _ = _embeddings(arrays, names)
    return _rows.run(spec, inputs, [], [margin, p, eps], flags, reduction, return_grad, out)
