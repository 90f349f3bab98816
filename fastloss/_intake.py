"""Array intake and argument validation shared by every loss.

Errors name the argument, what was expected and what came. Checks raise exceptions, never
``assert`` (which ``python -O`` strips).
"""

from __future__ import annotations

import warnings

import numpy as np

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    """Return ``reduction`` if it is one of ``allowed``, else raise ``ValueError``."""
    if isinstance(reduction, str) and reduction in allowed:
        return reduction
    expected = ", ".join(repr(r) for r in allowed)
    raise ValueError(f"reduction: expected one of {expected}, got {reduction!r}")


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's deprecated ``size_average``/``reduce`` pair, resolved as torch resolves it."""
    if size_average is None and reduce is None:
        return reduction
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
        stacklevel=3,
    )
    return resolved


def check_nonnegative(value: object, name: str, *, strict: bool = False) -> float:
    """Return ``value`` as a float if it is a finite-or-inf number >= 0 (> 0 when strict)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {value!r}") from None
    if number != number or number < 0 or (strict and number == 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    return number


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
        if len(out) != count:
            raise ValueError(f"out: expected {count} arrays, got {len(out)}")
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
        raise TypeError(
            f"{name}: expected an array (NumPy, CuPy, DLPack or a sequence of numbers), "
            f"got {type(x).__name__}"
        ) from exc
    return array


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
    raise TypeError(
        f"{name}: expected a floating, integer or bool dtype "
        f"(float16, float32 or float64 for inputs), got {dtype}"
    )


def check_cast(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``array`` in ``dtype`` (no copy when it already is), refusing non-numeric dtypes."""
    if array.dtype == dtype:
        return array
    if array.dtype.kind not in "fiub" or (array.dtype.kind == "f" and array.dtype.itemsize > 8):
        raise TypeError(f"{name}: expected a floating, integer or bool dtype, got {array.dtype}")
    return array.astype(dtype)


def broadcast_shape(shapes: list[tuple[int, ...]], names: list[str]) -> tuple[int, ...]:
    """The common shape of ``shapes`` under NumPy broadcasting, or a ``ValueError``."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(f"shape mismatch: {listed} cannot be broadcast together") from None


def warn_target_size(input_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
    """torch's warning for regression losses whose target size differs from the input's."""
    warnings.warn(
        f"Using a target size ({tuple(target_shape)}) that is different to the input size "
        f"({tuple(input_shape)}). This will likely lead to incorrect results due to "
        "broadcasting. Please ensure they have the same size.",
        UserWarning,
        stacklevel=3,
    )
