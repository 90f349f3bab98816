"""The CPU plan of a row loss declared for the row factory (:mod:`fastloss.kernels.rows`): the
one plan of the softmax family (:mod:`fastloss.softmax`) and the pairwise losses
(:mod:`fastloss.pairwise`).

A public row loss checks its arguments and resolves them into :class:`Rows` (each input a
C-contiguous ``(rows, D)`` matrix of one compute dtype, its row axis moved last where it is not),
per-row arrays and runtime parameters. The plan then gives the gradients their buffers
(:meth:`Rows.grad_buffer`: ``out`` itself where the kernel may write it), launches the generated
kernel (:func:`launch`), reduces the per-row float64 losses under the reduction contract
(:func:`reduce`: a row is an element; into an :class:`~fastloss.Accumulator`'s sink while one
updates), scales the gradient as the reduction asks (:func:`scale`) and lays it back out
(:meth:`Rows.finish_grad`). :func:`run` is the whole plan for the losses with nothing more to
resolve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastloss import _elementwise, _reduction, _threading
from fastloss._intake import check_cast, split_out


def _factory():
    _threading.prepare()  # before anything can launch a parallel kernel
    from fastloss.kernels import rows

    return rows


class Rows:
    """``x`` (checked by the caller) as a C-contiguous ``(rows, D)`` matrix in ``dtype``, a row
    per position along every axis but ``axis`` (moved last, one copy, where it is not), and the
    way back to ``x``'s layout for its gradient (of ``grad_dtype``)."""

    def __init__(self, x: np.ndarray, dtype, grad_dtype, axis: int = -1, name: str = "input"):
        self.original = x
        self.dtype = np.dtype(dtype)
        self.grad_dtype = np.dtype(grad_dtype)
        self.shape = x.shape
        self.class_axis = axis % x.ndim
        self.classes = x.shape[self.class_axis]
        self.moved = self.class_axis != x.ndim - 1
        moved = self.move(x)
        self.batch_shape = moved.shape[:-1]
        rows = int(np.prod(self.batch_shape))
        self.matrix = np.ascontiguousarray(check_cast(moved, self.dtype, name))
        self.matrix = self.matrix.reshape(rows, self.classes)

    def move(self, array: np.ndarray) -> np.ndarray:
        """``array`` (of ``x``'s shape) with its row axis last."""
        return np.moveaxis(array, self.class_axis, -1) if self.moved else array

    def like(self, array: np.ndarray, name: str) -> np.ndarray:
        """``array`` (of ``x``'s shape) laid out as the rows, in the compute dtype."""
        moved = check_cast(self.move(array), self.dtype, name)
        return np.ascontiguousarray(moved).reshape(self.matrix.shape)

    @property
    def rows(self) -> int:
        return self.matrix.shape[0]

    def grad_buffer(self, out: object, others=(), inputs=None, outs=(), index=0) -> np.ndarray:
        """Where the kernel writes the gradient: ``out`` itself when it can be, that is when it
        is laid out as the rows in the compute dtype, overlaps each of ``inputs`` (default this
        matrix) exactly or not at all (the gradient sweep reads a column of every input before
        it writes that column of every gradient), shares no memory with ``others`` (targets,
        class weights) and none with the other gradients' entries of ``outs``."""
        if out is None:
            return np.empty(self.matrix.shape, self.dtype)
        _elementwise.check_out(out, self.shape, self.grad_dtype, "out")
        if not self.moved and out.dtype == self.dtype and out.flags.c_contiguous:
            flat = out.reshape(self.matrix.shape)
            inputs = (self.matrix,) if inputs is None else inputs
            exact = all(
                not np.may_share_memory(flat, x) or _elementwise._same_memory(flat, x)
                for x in inputs
            )
            apart = not any(np.may_share_memory(out, x) for x in others) and not any(
                o is not None and j != index and np.may_share_memory(out, o)
                for j, o in enumerate(outs)
            )
            if exact and apart:
                return flat
        return np.empty(self.matrix.shape, self.dtype)

    def finish_grad(self, grad: np.ndarray, out: object) -> np.ndarray:
        """The gradient in ``x``'s layout, in ``out`` when given, else of ``x``'s gradient
        dtype."""
        shaped = grad.reshape(self.batch_shape + (self.classes,))
        if self.moved:
            shaped = np.moveaxis(shaped, -1, self.class_axis)
        if out is None:
            return shaped.astype(self.grad_dtype, copy=False)
        if not _elementwise._same_memory(out, grad.reshape(out.shape)):
            np.copyto(out, shaped, casting="same_kind")
        return out

    def reduce(self, row_values: np.ndarray, reduction: str, count: float = 0.0, weights=None,
               denominator=None, name: str = "loss", part: bool = True):  # fmt: skip
        """Per-row values reduced under the contract (:func:`fastloss._reduction.reduce_values`:
        a mean by ``count`` or by the sum of the row ``weights``, ``denominator`` when the
        caller has it), a scalar of the compute dtype; the rows for ``"none"``."""
        if reduction == "none":
            return row_values.astype(self.dtype).reshape(self.batch_shape)
        value = _reduction.reduce_values(
            row_values, reduction, count=count, weights=weights, denominator=denominator,
            name=name, part=part,
        )  # fmt: skip
        return self.dtype.type(value)


def scale(reduction: str, denominator: float) -> float:
    """The gradient's factor ``1 / denominator`` of a mean in float64 (inf for 0, as the
    elementwise losses), 1 otherwise; an Accumulator's while one updates."""
    return float(_reduction.grad_scale(reduction, np.dtype(np.float64), denominator))


def run(
    spec,
    inputs: Sequence[Rows],
    row_arrays: Sequence[np.ndarray],
    params: Sequence[float],
    flags: tuple[bool, ...],
    reduction: str,
    return_grad: bool,
    out: object = None,
):
    """The loss of ``spec`` over the rows of ``inputs`` (one batch shape and compute dtype; and
    its gradients, one per entry of ``spec.grads``, in each input's shape and gradient dtype).

    ``out`` (an array, or a tuple with an array or None per gradient) receives the gradients;
    the kernel writes into an entry directly when it is C-contiguous in the compute dtype and
    overlaps no operand other than exactly (it may be an input itself), else into a buffer
    copied there."""
    outs = split_out(out, return_grad, len(spec.grads))
    first = inputs[0]
    operands = [*(x.matrix for x in inputs), *row_arrays]
    typed = tuple(float(p) for p in params)
    grads = []
    scales = None
    if return_grad:
        grads = [
            inputs[i].grad_buffer(o, inputs=operands, outs=outs, index=j)
            for j, (i, o) in enumerate(zip(spec.grads, outs, strict=True))
        ]
        scales = (scale(reduction, first.rows),)
    (row_loss,) = launch(spec, flags, tuple(operands), typed, scales, grads)
    value = first.reduce(row_loss, reduction, count=first.rows)
    if not return_grad:
        return value
    done = zip(spec.grads, grads, outs, strict=True)
    return value, tuple(inputs[i].finish_grad(g, o) for i, g, o in done)


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
