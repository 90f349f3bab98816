"""The reduction contract on the Python side: the state of a run of elements, carried between
chunks, merged, pickled.

The kernels (:mod:`fastloss.kernels.reduction`) define the contract; this module holds a run's
state between calls. A :class:`Partial` covers the elements ``[start, end)`` of one quantity
(a loss's sum, a weight sum): the stack of completed tree nodes, the lanes of the segment in
progress at ``end`` and, for a run that does not start on a segment boundary and so cannot
know the lanes it continues, the raw values of its elements up to the first boundary. Two
adjacent runs merge into the run that covers both, with the bits the whole run would have had.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

import numpy as np

from fastloss.kernels._jit import LANES, SEGMENT, STACK

_reduction = None


def _kernels():
    global _reduction
    if _reduction is None:
        from fastloss.kernels import reduction

        _reduction = reduction
    return _reduction


# A run's state is two buffers, so that a fresh state is a copy of this template and an
# allocation, and a snapshot two copies: the floats are the stack's values (scratch, 0) and the
# lanes of the segment in progress (sums 0, products 1), the integers the stack's levels and
# indices.
_FRESH_FLOATS = np.concatenate([np.zeros(STACK + LANES), np.ones(LANES)])
# The head of a run that has none: shared, never written (a head is replaced, not grown in
# place), and of size 0 it could not be.
_NO_HEAD = np.empty(0)


def _buffers() -> tuple[np.ndarray, np.ndarray]:
    return _FRESH_FLOATS.copy(), np.empty(2 * STACK, np.int64)


def fresh_state() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(state, levels, indices, values)`` of an empty run: the lanes of a new segment
    (sums 0, products 1) and an empty stack."""
    floats, ints = _buffers()
    return floats[STACK:], ints[:STACK], ints[STACK:], floats[:STACK]


class Partial:
    """The reduction state of the elements ``[start, end)`` of one quantity.

    ``start`` is a global position; a run that starts inside a segment keeps the values of its
    elements up to the next segment boundary (at most ``SEGMENT - 1``), since the lanes they
    continue belong to the run before it.
    """

    __slots__ = ("start", "end", "log_factor", "head_v", "head_f", "state", "levels",
                 "indices", "values", "depth", "floats", "ints")  # fmt: skip
    # what a pickle holds (the buffers are rebuilt from the arrays, their views)
    _PICKLED = __slots__[:-2]

    def __init__(self, start: int = 0, log_factor: bool = False):
        self.start = int(start)
        self.end = int(start)
        self.log_factor = bool(log_factor)
        self.head_v = _NO_HEAD
        self.head_f = _NO_HEAD
        self._set_buffers(*_buffers())
        self.depth = 0

    def _set_buffers(self, floats: np.ndarray, ints: np.ndarray) -> None:
        self.floats, self.ints = floats, ints
        self.state, self.values = floats[STACK:], floats[:STACK]
        self.levels, self.indices = ints[:STACK], ints[STACK:]

    @property
    def boundary(self) -> int:
        """The first segment boundary at or after ``start``."""
        return -(-self.start // SEGMENT) * SEGMENT

    def _in_head(self) -> bool:
        return self.end < self.boundary

    def add_head(self, v: np.ndarray, f: np.ndarray | None) -> None:
        self.head_v = np.concatenate([self.head_v, v.astype(np.float64)])
        if self.log_factor:
            self.head_f = np.concatenate([self.head_f, f.astype(np.float64)])
        self.end += v.size

    def copy(self) -> Partial:
        other = Partial.__new__(Partial)
        other.start, other.end, other.depth = self.start, self.end, self.depth
        other.log_factor, other.head_v, other.head_f = self.log_factor, self.head_v, self.head_f
        other._set_buffers(self.floats.copy(), self.ints.copy())
        return other

    def snapshot(self) -> tuple:
        """What :meth:`restore` needs to undo the kernels' next runs: the positions and the
        buffers (lanes and stack). The head arrays are replaced, never written, so they are
        kept as they are."""
        return (self.end, self.depth, self.head_v, self.head_f, self.floats.copy(),
                self.ints.copy())  # fmt: skip

    def restore(self, snapshot: tuple) -> None:
        """Back to the state of :meth:`snapshot`."""
        self.end, self.depth, self.head_v, self.head_f, floats, ints = snapshot
        self.floats[:] = floats
        self.ints[:] = ints

    def merge(self, other: Partial) -> None:
        """Append ``other``, the run that starts where this one ends."""
        if other.start != self.end:
            raise ValueError(
                f"other: expected a run that starts at element {self.end}, where this one ends, "
                f"got one that starts at {other.start}"
            )
        if other.log_factor != self.log_factor:
            raise ValueError("other: expected the state of the same loss")
        kernels = _kernels()
        if other.head_v.size:
            if self._in_head():
                self.head_v = np.concatenate([self.head_v, other.head_v])
                self.head_f = np.concatenate([self.head_f, other.head_f])
            else:
                self.depth = kernels.append_values(
                    self.state, self.end, other.head_v, other.head_f if self.log_factor
                    else other.head_v, self.log_factor, self.levels, self.indices, self.values,
                    self.depth,
                )  # fmt: skip
        if other.end > other.boundary or other.start % SEGMENT == 0:
            for j in range(other.depth):
                self.depth = kernels.push(
                    self.levels, self.indices, self.values, self.depth,
                    other.levels[j], other.indices[j], other.values[j],
                )  # fmt: skip
            self.state[:] = other.state
        self.end = other.end

    def total(self) -> float:
        """The sum of a run that starts at element 0."""
        if self.start != 0:
            raise ValueError(
                f"this state starts at element {self.start}: merge it into the state of the "
                "elements before it first"
            )
        return float(
            _kernels().fold(
                self.levels,
                self.indices,
                self.values,
                self.depth,
                self.state,
                self.end,
                self.log_factor,
            )  # fmt: skip
        )

    def __getstate__(self):
        return {name: getattr(self, name) for name in Partial._PICKLED}

    def __setstate__(self, state):
        arrays = {name: state.pop(name) for name in ("state", "levels", "indices", "values")}
        for name, value in state.items():
            setattr(self, name, value)
        self._set_buffers(*_buffers())
        for name, value in arrays.items():
            getattr(self, name)[:] = value


# --- accumulation: where a loss's reductions go while an Accumulator updates ----------------

_active: ContextVar[Sink | None] = ContextVar("fastloss_sink", default=None)


def active() -> Sink | None:
    """The sink of the Accumulator updating in this context, or None (a one-shot call)."""
    return _active.get()


def divide(total: float, denominator: float) -> float:
    """``total / denominator`` with IEEE semantics for a zero denominator (as torch divides)."""
    if denominator:
        return total / denominator
    if total != total or total == 0:
        return math.nan
    return math.copysign(math.inf, total)


class Quantity:
    """One reduced quantity of a loss: the sum of its elements and the denominator of its
    mean (an element or row count, or a :class:`Partial` of weights)."""

    __slots__ = ("sum", "count", "weights")

    def __init__(self, start: int, log_factor: bool):
        self.sum = Partial(start, log_factor)
        self.count = 0
        self.weights: Partial | None = None

    def copy(self) -> Quantity:
        other = Quantity.__new__(Quantity)
        other.sum = self.sum.copy()
        other.count = self.count
        other.weights = None if self.weights is None else self.weights.copy()
        return other

    def snapshot(self) -> tuple:
        weights = self.weights
        return (self.sum.snapshot(), self.count, weights,
                None if weights is None else weights.snapshot())  # fmt: skip

    def restore(self, snapshot: tuple) -> None:
        total, self.count, self.weights, weights = snapshot
        self.sum.restore(total)
        if weights is not None:
            self.weights.restore(weights)

    def merge(self, other: Quantity) -> None:
        if (self.weights is None) != (other.weights is None):
            raise ValueError("other: expected chunks weighted as this accumulator's are")
        self.sum.merge(other.sum)
        self.count += other.count
        if self.weights is not None:
            self.weights.merge(other.weights)

    def value(self, reduction: str) -> float:
        total = self.sum.total()
        if reduction == "sum":
            return total
        denominator = self.weights.total() if self.weights is not None else self.count
        return divide(total, denominator)

    def __getstate__(self):
        return (self.sum, self.count, self.weights)

    def __setstate__(self, state):
        self.sum, self.count, self.weights = state


class Sink:
    """The reductions of the chunks an Accumulator takes: one :class:`Quantity` per name, in
    the order the loss first reduced them; the loss is their sum (each its own mean).

    ``start`` is the global position (element, or row for row losses) of the first chunk;
    ``total`` the denominator of the whole mean, when known, which fixes the gradient's scale
    of every chunk.
    """

    # While an update runs (the sink is then a context manager: ``with sink:``): the state each
    # quantity had before the update changed it (None for one the update created), taken before
    # its first change, so that a failed update is undone without a copy of the sink made
    # before every chunk; the reduction before the update; the token of ``_active``. None
    # between updates, and not pickled.
    _journal: dict[str, tuple | None] | None = None
    _reduction_before: str | None = None
    _token = None

    def __init__(self, start: int = 0, total: float | None = None):
        self.start = int(start)
        self.total = total
        self.quantities: dict[str, Quantity] = {}
        self.reduction: str | None = None

    def copy(self) -> Sink:
        other = Sink(self.start, self.total)
        other.quantities = {k: q.copy() for k, q in self.quantities.items()}
        other.reduction = self.reduction
        return other

    def __getstate__(self):
        return {"start": self.start, "total": self.total, "quantities": self.quantities,
                "reduction": self.reduction}  # fmt: skip

    def __enter__(self) -> Sink:
        """Start an update: the sink is active (:func:`active`) until it ends, and journals
        each quantity before changing it; if the update raises, every change is undone."""
        if self._journal is not None:
            raise RuntimeError(
                "update: this accumulator is already taking a chunk (in another thread?); "
                "the updates of one accumulator must not overlap"
            )
        self._journal = {}
        self._reduction_before = self.reduction
        self._token = _active.set(self)
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        _active.reset(self._token)
        journal = self._journal
        self._journal = self._token = None
        if kind is not None:
            quantities = self.quantities
            for name, snapshot in reversed(journal.items()):
                if snapshot is None:
                    del quantities[name]
                else:
                    quantities[name].restore(snapshot)
            self.reduction = self._reduction_before
        return False

    def quantity(self, name: str, reduction: str, log_factor: bool = False) -> Quantity:
        """Quantity ``name``, created at its first use; the state it has is journaled first
        while an update runs (every change to a quantity goes through here)."""
        found = self.quantities.get(name)
        journal = self._journal
        if journal is not None and name not in journal:
            journal[name] = None if found is None else found.snapshot()
        if self.reduction is None:
            self.reduction = reduction
        if found is None:
            found = self.quantities[name] = Quantity(self.start, log_factor)
        return found

    def grad_scale(self, reduction: str, dtype) -> object:
        """The scale of a chunk's gradient: 1 for a sum, ``1 / total`` for a mean."""
        if reduction == "sum":
            return dtype.type(1.0)
        if self.total is None:
            raise ValueError(
                "return_grad: a chunk's gradient of a mean needs the mean's denominator; pass "
                "total= to the Accumulator (the element count, the row count or the weight sum "
                "of all the chunks), or use reduction='sum'"
            )
        return dtype.type(1.0 / self.total) if self.total else dtype.type(np.inf)

    def merge(self, other: Sink) -> None:
        if list(other.quantities) != list(self.quantities) and self.quantities and other.quantities:
            raise ValueError("other: expected an accumulator of the same loss and options")
        for name, quantity in other.quantities.items():
            if name in self.quantities:
                self.quantities[name].merge(quantity)
            else:
                self.quantities[name] = quantity.copy()
        self.reduction = self.reduction or other.reduction

    def value(self, dtype) -> object:
        """The loss in ``dtype``: the quantities' reduced values, each rounded to ``dtype``,
        added in ``dtype`` (as a one-shot call adds a cross-entropy and its z-loss)."""
        total = None
        for quantity in self.quantities.values():
            part = dtype.type(quantity.value(self.reduction))
            total = part if total is None else dtype.type(total + part)
        return total


def accumulate(partial: Partial, module, kind: str, n: int, arrays: tuple, params: tuple,
               grad_args: tuple = (), split=None) -> float:  # fmt: skip
    """Run reduction kernel ``kind`` of ``module`` over the next ``n`` elements of ``partial``
    (``arrays`` and the gradients in ``grad_args[1:]`` are 1-D, ``n`` long). Elements that
    precede the first segment of an accumulator starting inside one are kept raw. Returns the
    running sum (meaningful from element 0). ``split(arrays, head)``, where given, returns the
    kernel arguments of the first ``head`` elements and of the others (default: slices; a
    broadcast operand passed as memory and pattern moves its pattern instead)."""
    if partial.start % SEGMENT and partial.end < partial.boundary:
        head = min(n, partial.boundary - partial.end)
        v = np.empty(head, arrays[0].dtype)
        f = np.empty(head, arrays[0].dtype)
        stage = getattr(module, "stage" + kind[len("reduce") :])  # the kind's own elements
        scale, grads = grad_args[:1], grad_args[1:]
        if split is None:
            first, arrays = tuple(a[:head] for a in arrays), tuple(a[head:] for a in arrays)
        else:
            first, arrays = split(arrays, head)
        stage(*first, *params, *scale, *(g[:head] for g in grads), v, f)
        partial.add_head(v, f)
        grad_args = (*scale, *(g[head:] for g in grads))
        n -= head
    launch = (_elementwise or _import_elementwise())._launch
    depth, total = launch(module, kind, n, (*arrays, *params, *grad_args, partial.end,
                          partial.state, partial.levels, partial.indices, partial.values,
                          partial.depth))  # fmt: skip
    partial.end += n
    partial.depth = int(depth)
    return total


_elementwise = None


def _import_elementwise():
    """:mod:`fastloss._elementwise`, which imports this module (its ``_launch`` is looked up
    at each call, as that module holds it)."""
    global _elementwise
    from fastloss import _elementwise

    return _elementwise


def add_denominator(quantity: Quantity, weights, count: float, start: int) -> None:
    """Add a chunk's share of a mean's denominator: its weights (a 1-D array, reduced under
    the contract) or its count."""
    if weights is None:
        quantity.count += count
        return
    from fastloss import _elementwise

    if quantity.weights is None:
        quantity.weights = Partial(start)
    module = _elementwise._module(_elementwise.spec("sums", "SUM"), (), False)
    accumulate(quantity.weights, module, "reduce_value", weights.size, (weights,), ())


def reduce_values(values: np.ndarray, reduction: str, *, count: float = 0, weights=None,
                  denominator: float | None = None, name: str = "loss", part: bool = True,
                  ) -> float:  # fmt: skip
    """The sum, or the mean, of per-row values (float64, a row is an element): by ``count``
    or by the contract sum of ``weights`` (``denominator`` where the caller has it already).
    Into the active sink's quantity ``name`` while an Accumulator updates (the result is then
    the running sum); a value that is not ``part`` of the loss (a z-loss returned beside it)
    is not accumulated and is NaN then."""
    from fastloss import _elementwise

    sink = active()
    module = _elementwise._module(_elementwise.spec("sums", "SUM"), (), False)
    if sink is not None and not part:
        return math.nan
    if sink is not None:
        quantity = sink.quantity(name, reduction)
        total = accumulate(quantity.sum, module, "reduce_value", values.size, (values,), ())
        add_denominator(quantity, weights, count, sink.start)
        return total
    total = _elementwise._reduce(module, "reduce_value", values.size, (values,))
    if reduction == "sum":
        return total
    if denominator is None:
        denominator = mean_denominator(count, weights)
    return divide(total, denominator)


def mean_denominator(count: float, weights=None) -> float:
    """A mean's denominator, as :func:`reduce_values` takes it (one-shot calls)."""
    if weights is None:
        return count
    from fastloss import _elementwise

    return _elementwise.sum_array(weights)


def grad_scale(reduction: str, dtype, denominator: float, needed: bool = True):
    """The scale of a gradient of the mean (or sum) over ``denominator``: the active sink's
    scale while an Accumulator updates (where the gradient is ``needed``)."""
    sink = active()
    if sink is not None and not needed:
        return dtype.type(1.0)
    if sink is not None:
        return sink.grad_scale(reduction, dtype)
    if reduction != "mean":
        return dtype.type(1.0)
    return dtype.type(1.0 / denominator) if denominator else dtype.type(np.inf)
