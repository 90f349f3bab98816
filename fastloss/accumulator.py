"""``fastloss.Accumulator``: any registered loss over data that comes in chunks.

A loss's reduction follows a contract (:mod:`fastloss.kernels.reduction`) in which the sum is a
function of the element losses and their global positions only; an accumulator carries the
state of that sum from one chunk to the next, so that ``compute()`` returns the one-shot call's
value bit for bit, whatever the chunk sizes, and two accumulators of adjacent runs merge into
the accumulator of both.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from fastloss import _reduction
from fastloss._intake import check_option, is_device_array

REDUCING = ("mean", "sum", "batchmean")


HESS_MESSAGE = (
    "return_hess: asked of a chunk (update(..., return_hess=True)), not of the accumulator"
)


def _same_options(a: dict, b: dict) -> bool:
    """Whether two option sets are equal (array options compared by value)."""
    if a.keys() != b.keys():
        return False
    for name, value in a.items():
        other = b[name]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            if not np.array_equal(np.asarray(value), np.asarray(other), equal_nan=True):
                return False
        elif value != other:
            return False
    return True


def _registry():
    from fastloss.registry import LOSSES

    return LOSSES


_signatures: dict[object, tuple[list[str], object]] = {}


def _options_of(info) -> tuple[list[str], object]:
    """The option names of a registered loss (its parameters but the chunk arrays and the
    gradient arguments) and its default ``reduction``, read once per function."""
    found = _signatures.get(info.function)
    if found is None:
        parameters = inspect.signature(info.function).parameters
        allowed = [
            name
            for name in parameters
            if name not in info.data + ("return_grad", "return_hess", "out")
        ]
        found = _signatures[info.function] = (allowed, parameters["reduction"].default)
    return found


def _known_layout(data: dict, names: tuple[str, ...]) -> tuple | None:
    """The chunk arrays' dtypes (the objects) and trailing shapes, for :func:`_same_layout`;
    None unless every chunk array is a NumPy array or absent."""
    known = []
    for name in names:
        value = data.get(name)
        if value is None:
            known.append((name, None, None))
        elif type(value) is np.ndarray:
            known.append((name, value.dtype, value.shape[1:]))
        else:
            return None
    return tuple(known)


def _same_layout(known: tuple, data: dict) -> bool:
    """Whether the chunk arrays in ``data`` have the dtypes and trailing shapes of ``known``
    (a chunk that had the first chunk's layout): the common case, checked without building
    this chunk's layout. False can also mean "not sure" (an equal dtype that is another
    object): the full check decides then."""
    for name, dtype, trailing in known:
        value = data.get(name)
        if dtype is None:
            if value is not None:
                return False
        elif (
            type(value) is not np.ndarray
            or value.dtype is not dtype
            or (value.shape[1:] != trailing)
        ):
            return False
    return True


def _layout_of(name: str, value) -> tuple | None:
    """A chunk array's dtype and trailing shape (``("scalar", kind)`` for a scalar), which
    every chunk must share with the first."""
    if type(value) is np.ndarray:
        return (value.dtype.str, value.shape[1:])
    if value is None:
        return None
    if is_device_array(value):
        raise TypeError(
            f"{name}: an Accumulator takes host arrays (NumPy, DLPack on the CPU, "
            f"sequences); got a device array ({type(value).__name__})"
        )
    if isinstance(value, int | float | np.integer | np.floating):
        return ("scalar", np.asarray(value).dtype.kind)
    array = np.asarray(value) if not hasattr(value, "shape") else value
    return (np.dtype(array.dtype).str, tuple(array.shape[1:]))


class Accumulator:
    """A registered loss reduced chunk by chunk, with the one-shot call's bits.

    Parameters
    ----------
    loss : str
        A name of :data:`fastloss.registry.LOSSES` (``"mse_loss"``, ``"cross_entropy"``, ...).
    start : int
        The global position of this accumulator's first element (the first row, for a row
        loss such as ``cross_entropy``), for an accumulator that is merged after the ones
        that cover what precedes it (a worker's share of a file). Default 0.
    total : float, optional
        The denominator of the whole mean (the element count, the row count, the weight sum),
        when known: it fixes every chunk's gradient (``update(..., return_grad=True)``) with
        ``reduction="mean"``. Not needed for ``reduction="sum"``.
    **options
        The loss's options, as its function takes them (``reduction``, ``delta``,
        ``label_smoothing``, ``ignore_index``, class ``weight`` for ``cross_entropy``, ...).
        ``reduction`` must reduce: ``"mean"``, ``"sum"`` (or ``"batchmean"`` for
        ``kl_div``).

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> x, t = np.linspace(-1, 1, 1000), np.linspace(1, -1, 1000)
    >>> acc = fastloss.Accumulator("huber_loss", delta=0.5)
    >>> for lo in range(0, 1000, 300):
    ...     acc.update(x[lo : lo + 300], t[lo : lo + 300])
    >>> bool(acc.compute() == fastloss.huber_loss(x, t, delta=0.5))
    True
    """

    def __init__(self, loss: str, /, *, start: int = 0, total: float | None = None, **options):
        losses = _registry()
        if not isinstance(loss, str) or loss not in losses:
            names = ", ".join(sorted(losses))
            raise ValueError(f"loss: expected a registered loss ({names}), got {loss!r}")
        self.loss = loss
        info = self._info = losses[loss]
        if "return_hess" in options:
            raise TypeError(HESS_MESSAGE)
        allowed, default_reduction = _options_of(info)
        unknown = [name for name in options if name not in allowed]
        if unknown:
            expected = ", ".join(allowed)
            data = ", ".join(info.data)
            raise TypeError(
                f"{unknown[0]}: not an option of {loss} (its options: {expected}; the chunk "
                f"arrays {data} go to update())"
            )
        reduction = options.get("reduction", default_reduction)
        if reduction not in REDUCING:
            raise ValueError(
                f"reduction: an Accumulator reduces, expected 'mean' or 'sum' (or 'batchmean' "
                f"for kl_div), got {reduction!r}"
            )
        if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
            raise ValueError(f"start: expected an integer >= 0, got {start!r}")
        if total is not None:
            try:
                total = float(total)
            except (TypeError, ValueError):
                raise TypeError(f"total: expected a real number, got {total!r}") from None
            if not total >= 0:
                raise ValueError(f"total: expected a number >= 0, got {total!r}")
        self.options = dict(options)
        self.start = int(start)
        self.total = total
        self.reset()

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every chunk (the options, ``start`` and ``total`` stay)."""
        self._sink = _reduction.Sink(self.start, self.total)
        # The first chunk's layout (each chunk array's dtype string and trailing shape), made
        # from ``_known`` when first needed; the dtype objects and trailing shapes of a chunk
        # of NumPy arrays that had it, which the next chunks are compared with (fast); the
        # loss's compute dtype.
        self._layout: dict | None = None
        self._known: tuple | None = None
        self._dtype: np.dtype | None = None

    def __getstate__(self):
        return {
            "loss": self.loss,
            "options": self.options,
            "start": self.start,
            "total": self.total,
            "sink": self._sink,
            "layout": self._first_layout(),
            "dtype": self._dtype,
        }

    def __setstate__(self, state):
        self.loss = state["loss"]
        self.options = state["options"]
        self.start = state["start"]
        self.total = state["total"]
        self._sink = state["sink"]
        self._layout = state["layout"]
        self._dtype = state["dtype"]
        self._known = None
        self._info = _registry()[self.loss]

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"Accumulator({self.loss!r}{options}, start={self.start}, end={self.end})"

    @property
    def end(self) -> int:
        """The global position after the last element (row) taken so far."""
        quantities = list(self._sink.quantities.values())
        return quantities[0].sum.end if quantities else self.start

    # -- chunks -----------------------------------------------------------------------------

    def _first_layout(self) -> dict | None:
        """The first chunk's layout (None before the first chunk)."""
        if self._layout is None and self._known is not None:
            self._layout = {
                name: None if dtype is None else (dtype.str, trailing)
                for name, dtype, trailing in self._known
            }
        return self._layout

    def _new_layout(self, data: dict, names: tuple[str, ...]) -> tuple:
        """Check the layout of a chunk that is not known to have the first chunk's; returns
        what to record once the chunk went in: ``(known, layout)``."""
        known = _known_layout(data, names)
        if known is not None and self._dtype is None:
            return known, None  # a first chunk of NumPy arrays: its layout is made when needed
        layout = {name: _layout_of(name, data.get(name)) for name in names}
        self._check_layout(layout)
        return known, layout

    def _check_layout(self, layout: dict) -> None:
        first_layout = self._first_layout()
        if first_layout is None:
            return
        for name, first in first_layout.items():
            found = layout.get(name)
            if (first is None) != (found is None):
                given, missing = (
                    ("the first chunk", "this one") if first else ("this chunk", "the first")
                )
                raise ValueError(f"{name}: given for {given}, not for {missing}")
            if first is None or first == found:
                continue
            if first[0] != found[0]:
                raise ValueError(
                    f"{name}: expected dtype {first[0]} as in the first chunk, got {found[0]}"
                )
            raise ValueError(
                f"{name}: expected the trailing shape {first[1]} of the first chunk, got {found[1]}"
            )

    def update(
        self,
        *arrays: Any,
        return_grad: bool = False,
        out: Any = None,
        return_hess: bool = False,
        **named: Any,
    ):
        """Take the next chunk: the loss's data arrays (``input, target`` and, where the loss
        has them, ``weight``, ``var``, ...), positionally or by name.

        With ``return_grad=True`` returns the chunk's gradient (``out`` receives it), equal bit
        for bit to that chunk of the one-shot call's gradient; for a mean this needs ``total``
        from the constructor. On any error the accumulator is left as it was.
        ``return_hess=True`` (which implies ``return_grad``) returns ``(grad, hess)``, the
        chunk's gradient and second derivative, each equal bit for bit to that chunk of the
        one-shot call's (under the same conditions as the gradient).
        """
        return_hess = check_option(return_hess, "return_hess", "bool")
        return_grad = check_option(return_grad, "return_grad", "bool") or return_hess
        info = self._info
        names = info.data
        if len(arrays) > len(names):
            raise TypeError(
                f"update: takes the chunk arrays {', '.join(names)}, got {len(arrays)} "
                "positional arguments"
            )
        data = dict(zip(names, arrays, strict=False))
        for name, value in named.items():
            if name not in names:
                raise TypeError(
                    f"{name}: not a chunk array of {self.loss} (those are {', '.join(names)}; "
                    "options go to the constructor)"
                )
            if name in data:
                raise TypeError(f"{name}: given twice")
            data[name] = value
        for name in names[:2]:
            if name not in data:
                raise TypeError(f"update: missing the chunk array {name}")
        if return_grad and not info.chunk_grad:
            raise ValueError(
                f"return_grad: a chunk's gradient of {self.loss} depends on the final loss; "
                "accumulate the loss it is computed from with total= instead"
            )
        known = self._known
        if known is not None and _same_layout(known, data):
            taken = None
        else:
            taken = self._new_layout(data, names)
        # The sink journals what the call changes and undoes it if the call raises.
        hess = {"return_hess": True} if return_hess else {}
        with self._sink:
            result = info.function(**data, **self.options, return_grad=return_grad, out=out, **hess)
        if taken is not None:
            known, layout = taken
            if self._dtype is None:  # the first chunk
                self._layout = layout
                loss = result[0] if return_grad else result
                self._dtype = loss.dtype if isinstance(loss, np.generic) else np.asarray(loss).dtype
            if known is not None:
                self._known = known
        if return_hess:
            return result[-2], result[-1]
        return result[-1] if return_grad else None

    def merge(self, other: Accumulator) -> Accumulator:
        """Append ``other``, the accumulator of the chunks that follow (``other.start`` is
        where this one ends); returns ``self``."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"other: expected an Accumulator, got {type(other).__name__}")
        if other.loss != self.loss or not _same_options(other.options, self.options):
            raise ValueError(
                f"other: expected an accumulator of {self.loss} with options {self.options}, "
                f"got one of {other.loss} with {other.options}"
            )
        if other.start != self.end:
            raise ValueError(
                f"other: expected an accumulator that starts at element {self.end}, where this "
                f"one ends, got one that starts at {other.start}"
            )
        theirs = other._first_layout()
        if self._first_layout() is not None and theirs is not None:
            self._check_layout(theirs)
        merged = self._sink.copy()
        merged.merge(other._sink)
        self._sink = merged
        if self._first_layout() is None:
            self._layout, self._known, self._dtype = theirs, other._known, other._dtype
        return self

    def compute(self):
        """The loss over every chunk so far: the one-shot call's value bit for bit (a NumPy
        scalar of the compute dtype); for no chunk at all, the one-shot call's on an empty
        input."""
        info = _registry()[self.loss]
        if not self._sink.quantities:
            if self.start:
                raise ValueError(f"this accumulator starts at {self.start} and holds nothing")
            return info.function(**info.empty_inputs(), **self.options)
        if self.start:
            raise ValueError(
                f"this accumulator starts at element {self.start}: merge it into the one "
                "covering the elements before it, and compute that one"
            )
        value = self._sink.value(self._dtype)
        return info.finish(value) if info.finish is not None else value
