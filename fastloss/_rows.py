"""The CPU plan of a row loss declared for the row factory (:mod:`fastloss.kernels.rows`).

A public row loss resolves its arguments into C-contiguous ``(rows, D)`` matrices of one
compute dtype, per-row float64 arrays and runtime parameters, then :func:`run` launches the
generated kernel, reduces the per-row float64 losses under the reduction contract (a row is an
element; into an :class:`~fastloss.Accumulator`'s sink while one updates) and scales the
gradient as the reduction asks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastloss import _elementwise, _reduction, _threading
from fastloss._intake import split_out


def _factory():
    _threading.prepare()  # before anything can launch a parallel kernel
    from fastloss.kernels import rows

    return rows


def run(
    spec,
    matrices: Sequence[np.ndarray],
    row_arrays: Sequence[np.ndarray],
    params: Sequence[float],
    flags: tuple[bool, ...],
    reduction: str,
    return_grad: bool,
    batch_shape: tuple[int, ...],
    grad_dtypes: Sequence[np.dtype],
    out: object = None,
):
    """The loss of ``spec`` over the rows of ``matrices`` (and its gradients, one per entry of
    ``spec.grads``, each of shape ``batch_shape + (D,)`` in its ``grad_dtypes`` entry).

    ``out`` (an array, or a tuple with an array or None per gradient) receives the gradients;
    the kernel writes into an entry directly when it is C-contiguous in the compute dtype and
    overlaps no operand other than exactly, else into a buffer copied there."""
    outs = split_out(out, return_grad, len(spec.grads))
    first = matrices[0]
    rows, columns = first.shape
    dtype = first.dtype
    typed = tuple(float(p) for p in params)
    grads = []
    scales = None
    if return_grad:
        shape = batch_shape + (columns,)
        grads = [
            _buffer(o, shape, d, dtype, j, [*matrices, *row_arrays], outs)
            for j, (o, d) in enumerate(zip(outs, grad_dtypes, strict=True))
        ]
        scales = (float(_reduction.grad_scale(reduction, np.dtype(np.float64), rows)),)
    (row_loss,) = launch(spec, flags, (*matrices, *row_arrays), typed, scales, grads)
    if reduction == "none":
        value = row_loss.astype(dtype).reshape(batch_shape)
    else:
        value = dtype.type(_reduction.reduce_values(row_loss, reduction, count=rows))
    if not return_grad:
        return value
    results = []
    for g, o, d in zip(grads, outs, grad_dtypes, strict=True):
        g = g.reshape(batch_shape + (columns,))
        if o is None:
            results.append(g.astype(d, copy=False))
            continue
        if not _elementwise._same_memory(o, g):
            np.copyto(o, g, casting="same_kind")
        results.append(o)
    return value, tuple(results)


def launch(spec, flags: tuple[bool, ...], arrays: tuple, params: tuple, scales, grads) -> list:
    """Run ``spec``'s kernel on ``arrays`` (the input matrices, the per-row arrays, the column
    arrays, in the spec's order) with runtime ``params``; with ``scales`` (the gradient's, one
    per ``spec.scales``) the gradient goes into ``grads``. Returns the float64 per-row outputs
    (the loss first)."""
    module = _factory().kernels(spec, flags)
    rows, columns = arrays[0].shape
    outputs = [np.empty(rows, np.float64) for _ in range(spec.outputs)]
    elements = rows * max(columns, 1)
    if scales is None:
        _elementwise._launch(module, "value_rows", elements, (*arrays, *params, *outputs))
    else:
        args = (*arrays, *params, *scales, *grads, *outputs)
        _elementwise._launch(module, "value_grad_rows", elements, args)
    return outputs


def _buffer(out, shape, grad_dtype, dtype, index, operands, outs) -> np.ndarray:
    """Where the kernel writes gradient ``index``: ``out`` itself where it can be. The
    gradient sweep reads a column of every input before it writes that column of every
    gradient, so ``out`` may be exactly an input's matrix, but no other overlap is safe."""
    rows = operands[0].shape
    if out is None:
        return np.empty(rows, dtype)
    _elementwise.check_out(out, shape, grad_dtype, "out")
    if out.dtype == dtype and out.flags.c_contiguous:
        flat = out.reshape(rows)
        exact = all(
            not np.may_share_memory(flat, x) or _elementwise._same_memory(flat, x) for x in operands
        )
        apart = not any(
            o is not None and j != index and np.may_share_memory(out, o) for j, o in enumerate(outs)
        )
        if exact and apart:
            return flat
    return np.empty(rows, dtype)
