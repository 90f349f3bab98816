"""Array intake and argument validation shared by every loss.

Errors name the argument, what was expected and what came. Checks raise exceptions, never
``assert`` (which ``python -O`` strips).
"""

from __future__ import annotations

import operator
import os
import sys
import warnings

import numpy as np

REDUCTIONS = ("none", "mean", "sum")
INT64_MAX = 2**63 - 1


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    """Return ``reduction`` if it is one of ``allowed``, else raise ``ValueError``; torch's
    deprecated ``"elementwise_mean"`` is ``"mean"``, with torch's warning."""
    if isinstance(reduction, str) and reduction in allowed:
        return reduction
    if reduction == "elementwise_mean" and "mean" in allowed:
        warnings.warn(
            "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
        return "mean"
    expected = ", ".join(repr(r) for r in allowed)
    raise ValueError(f"reduction: expected one of {expected}, got {reduction!r}")


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's deprecated ``size_average``/``reduce`` pair, resolved as torch resolves it."""
    if size_average is None and reduce is None:
        return reduction
    check_option(size_average, "size_average", "bool", none=True)
    check_option(reduce, "reduce", "bool", none=True)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        resolved = "mean"
    else:
        resolved = "sum" if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{resolved}' "
        "instead.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    return resolved


def _show(value: object) -> str:
    """``repr(value)``, cut short (a huge int has hundreds of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


def check_option(
    value: object,
    name: str,
    kind: str = "real",
    *,
    none: bool = False,
    finite: bool = True,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
) -> float | int | bool | None:
    """Validate the scalar option ``name`` and return it as a Python float, int or bool.

    Parameters
    ----------
    value : object
        The caller's value.
    name : str
        The argument's name, which starts every message.
    kind : {"real", "int", "bool"}
        ``"real"``: any real number (``float()``-able, not a string), returned as a float;
        ``"int"``: an integer in int64's range (``operator.index``-able, not a bool, not a
        float: torch refuses ``ignore_index=1.0``); ``"bool"``: a Python or NumPy bool.
    none : bool
        ``None`` is allowed (and returned).
    finite : bool
        A real option must be finite (NaN is always refused).
    low, high : float, optional
        Bounds of a real option: ``>= low`` (``> low`` when ``strict``) and ``<= high``.

    Returns
    -------
    float, int, bool or None

    Raises
    ------
    TypeError
        A value of the wrong type: a string, ``None`` where not allowed, a float for an int.
    ValueError
        A value of the right type outside the allowed values: NaN, inf where not allowed, an
        int outside int64, a number out of bounds or too large for a float.
    """
    if value is None and none:
        return None
    if kind == "bool":
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise TypeError(f"{name}: expected a bool{' or None' if none else ''}, got {_show(value)}")
    if kind == "int":
        try:
            if isinstance(value, bool | np.bool_):
                raise TypeError
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            expected = "an int or None" if none else "an int"
            raise TypeError(f"{name}: expected {expected}, got {_show(value)}") from None
        if not -INT64_MAX - 1 <= number <= INT64_MAX:
            raise ValueError(f"{name}: expected an int in int64's range, got {_show(value)}")
        return number
    expected = "a finite real number" if finite else "a real number"
    if low is not None and high is not None:
        expected += f" in [{low:g}, {high:g}]"
    elif low is not None:
        expected += f" {'>' if strict else '>='} {low:g}"
    if none:
        expected += " or None"
    try:
        if isinstance(value, str | bytes | np.complexfloating):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ValueError(f"{name}: expected {expected}, got {_show(value)}") from None
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {expected}, got {_show(value)}") from None
    if (
        number != number
        or (finite and abs(number) == np.inf)
        or (low is not None and (number < low or (strict and number == low)))
        or (high is not None and number > high)
    ):
        raise ValueError(f"{name}: expected {expected}, got {_show(value)}")
    return number


def check_nonnegative(value: object, name: str, *, strict: bool = False) -> float:
    """Return ``value`` as a float if it is a number >= 0 (> 0 when strict), inf included."""
    return check_option(value, name, finite=False, low=0.0, strict=strict)  # type: ignore[return-value]


def split_out(out: object, return_grad: bool, count: int) -> list:
    """The caller's ``out`` as one entry (an array or None) per gradient.

    ``out`` is None, one array (the first gradient's) or a sequence of ``count`` entries; it
    receives gradients, so it needs ``return_grad=True``.
    """
    outs: list = [None] * count
    if out is None:
        return outs
    if not return_grad:
        raise ValueError("out: receives the gradient, so it needs return_grad=True")
    if isinstance(out, tuple | list):
        arrays = all(o is None or hasattr(o, "shape") for o in out)
        if len(out) != count or not arrays:
            kinds = ", ".join(sorted({type(o).__name__ for o in out})) or "entries"
            found = f"got a {type(out).__name__} of {len(out)} {kinds}"
            if not arrays:
                expected = (
                    "an array, which receives the gradient (or a tuple of that one array)"
                    if count == 1
                    else f"an array (the first gradient's) or a tuple of {count} arrays, one per "
                    "gradient"
                )
                raise TypeError(f"out: expected {expected}; {found}")
            raise ValueError(
                f"out: expected {count} arrays, one per gradient (an array, or a tuple of "
                f"{count}); {found}"
            )
        return list(out)
    outs[0] = out
    return outs


def is_device_array(x: object) -> bool:
    """True for CuPy arrays, anything exposing ``__cuda_array_interface__`` and the CUDA
    simulator's device arrays."""
    if type(x) is np.ndarray or x is None or isinstance(x, np.ndarray | np.generic | float | int):
        return False
    try:
        x.__cuda_array_interface__  # noqa: B018 - a property that raises off the device
    except AttributeError:
        return bool(getattr(type(x), "__cuda_ndarray__", False))
    except Exception:  # e.g. a CUDA tensor that records autograd refuses to export: on device
        return True
    return True


def host_array(x: object, name: str) -> np.ndarray:
    """View ``x`` as a NumPy array without a copy where possible.

    Accepts NumPy arrays, anything with ``__dlpack__`` on the CPU (torch CPU tensors are viewed,
    not copied), anything with ``__array__``, Python scalars and sequences.
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ndarray):
        return np.asarray(x)
    if hasattr(x, "detach") and getattr(x, "requires_grad", False):
        x = x.detach()  # a tensor that records autograd refuses to export its memory
    if hasattr(x, "__dlpack__") and not isinstance(x, np.generic):
        try:
            return np.from_dlpack(x)
        except (BufferError, TypeError, ValueError, RuntimeError):
            pass  # not a CPU buffer NumPy can view; fall back to __array__
    try:
        array = np.asarray(x)
    except Exception as exc:  # anything that can't become an array is a type error here
        if str(getattr(x, "dtype", "")).endswith("bfloat16"):
            raise unsupported_dtype(name, x.dtype) from None
        raise TypeError(
            f"{name}: expected an array (NumPy, CuPy, DLPack or a sequence of numbers), "
            f"got {type(x).__name__}"
        ) from exc
    return array


def unsupported_dtype(name: str, dtype: object, expected: str = "") -> TypeError:
    """The ``TypeError`` for an array of ``dtype``: bfloat16 (torch's, or ml_dtypes' in NumPy)
    is said to be unsupported yet; any other dtype gets ``expected``."""
    if str(dtype).endswith("bfloat16"):
        return TypeError(
            f"{name}: bfloat16 is not supported yet, got dtype {dtype}; convert it to float32 first"
        )
    return TypeError(f"{name}: expected {expected}, got {dtype}")


def compute_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """The dtype a loss computes in for an input of ``dtype``.

    float32 and float64 as given; float16 in float32; integers and bool in float64. Anything
    else (complex, object, strings, long double) raises ``TypeError``.
    """
    kind = dtype.kind
    if kind == "f":
        if dtype.itemsize <= 4:
            return np.dtype(np.float32)
        if dtype.itemsize == 8:
            return np.dtype(np.float64)
    elif kind in "iub":
        return np.dtype(np.float64)
    raise unsupported_dtype(
        name, dtype, "a floating, integer or bool dtype (float16, float32 or float64 for inputs)"
    )


def check_cast(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``array`` in ``dtype`` (no copy when it already is), refusing non-numeric dtypes."""
    if array.dtype == dtype:
        return array
    if array.dtype.kind not in "fiub" or (array.dtype.kind == "f" and array.dtype.itemsize > 8):
        raise unsupported_dtype(name, array.dtype, "a floating, integer or bool dtype")
    return array.astype(dtype)


def broadcast_shape(shapes: list[tuple[int, ...]], names: list[str]) -> tuple[int, ...]:
    """The common shape of ``shapes`` under NumPy broadcasting, or a ``ValueError``."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(f"shape mismatch: {listed} cannot be broadcast together") from None


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def caller_stacklevel() -> int:
    """The ``stacklevel`` that names the first caller outside fastloss (its modules and its
    generated functions), for a warning issued by the function that calls this one."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or frame.f_code.co_filename.startswith("<fastloss.")
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_target_size(input_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
    """torch's warning for regression losses whose target size differs from the input's."""
    warnings.warn(
        f"Using a target size ({tuple(target_shape)}) that is different to the input size "
        f"({tuple(input_shape)}). This will likely lead to incorrect results due to "
        "broadcasting. Please ensure they have the same size.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
