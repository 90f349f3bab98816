"""Shared helpers of the test suite: the reference of every loss, inputs, comparisons.

``TABLE`` maps every elementwise loss of the registry (``fastloss/registry.py``) to the real
library that defines its semantics (numbagg's ``test/conftest.py`` keeps such a map):
``torch.nn.functional`` for the torch-dialect losses, Keras 3 on its torch backend for the
Keras-semantics ones. It is read from the registry rows (their ``reference``, ``sample``,
``variants`` and ``grads``), so a registered loss is in it without an edit here.
``run_reference`` evaluates a reference with torch autograd, so values and gradients come from
the library itself, never from a re-implementation here. ``REFERENCES``, the regression
family's part, is the table of ``test_regression.py`` (and of ``test_properties.py`` and the
CUDA simulator's public-function test); ``test_elementwise.py`` runs the same differential
checks on every other family's.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

# Keras 3 picks its backend at import: the references run on torch, which gives autograd.
os.environ["KERAS_BACKEND"] = "torch"

from fastloss import registry  # noqa: E402

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")

# Shapes 0-d to 3-d, sizes 0, 1, 3 and 1000.
SHAPES = [(), (0,), (1,), (3,), (1000,), (3, 4), (2, 0, 3), (2, 3, 5)]


@functools.cache
def torch():
    import torch as _torch

    return _torch


@functools.cache
def keras():
    import keras as _keras

    assert _keras.backend.backend() == "torch", "the Keras references need KERAS_BACKEND=torch"
    return _keras


# --- inputs ----------------------------------------------------------------------------------

# One set of options of a loss and how to build its inputs (the registry's variants).
Option = registry.Variant
_var_shape = registry.var_shape


def _positive(rng, shape, low=0.05, high=3.0):
    return rng.uniform(low, high, shape)


@dataclass(frozen=True)
class Reference:
    """A loss under test: the fastloss function, its reference, its inputs and options."""

    name: str
    family: str
    dialect: str  # "torch" or "keras"
    reference: Callable  # (tensors, reduction, kwargs, dtype) -> torch loss tensor
    sample: Callable  # (rng, shape, kwargs) -> {"input": ..., "target": ...} float64
    options: tuple[Option, ...] = (Option("default"),)
    grads: tuple[str, ...] = ("input",)

    @property
    def function(self) -> Callable:
        import fastloss

        return getattr(fastloss, self.name)


def _torch_reference(name: str) -> Callable:
    def call(tensors, reduction, kwargs, dtype):
        return getattr(torch().nn.functional, name)(**tensors, reduction=reduction, **kwargs)

    return call


# Keras's reductions for a fastloss reduction. Keras averages over the last axis first; the
# references add a trailing axis of size 1, so that step is the identity and Keras's own
# reduction runs over every element, as fastloss's does.
KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}


def _keras_loss(cls_name: str, reduction: str, dtype) -> object:
    cls = getattr(keras().losses, cls_name)
    return cls(reduction=KERAS_REDUCTION[reduction], dtype=np.dtype(dtype).name)


def _keras_reference(cls_name: str) -> Callable:
    def call(tensors, reduction, kwargs, dtype):
        loss = _keras_loss(cls_name, reduction, dtype)
        return loss(tensors["target"][..., None], tensors["input"][..., None])

    return call


def _rmse_reference(tensors, reduction, kwargs, dtype):
    """sqrt of Keras's MeanSquaredError: RootMeanSquaredError is a metric (no autograd); its
    value is checked against the metric itself in test_regression.py."""
    mse = _keras_reference("MeanSquaredError")(tensors, reduction, kwargs, dtype)
    return torch().sqrt(mse)


# References that are no differentiable function of (input, target, options), by name.
SPECIAL_REFERENCES = {"keras.metrics.RootMeanSquaredError": _rmse_reference}


def reference_call(reference: str) -> Callable:
    """The autograd reference of a registry row's ``reference``: a ``torch.nn.functional``
    function, a ``keras.losses`` class, or one of :data:`SPECIAL_REFERENCES`."""
    if reference in SPECIAL_REFERENCES:
        return SPECIAL_REFERENCES[reference]
    module, _, name = reference.rpartition(".")
    if module == "torch.nn.functional":
        return _torch_reference(name)
    if module == "keras.losses":
        return _keras_reference(name)
    raise ValueError(f"no autograd reference for {reference!r}: add it to SPECIAL_REFERENCES")


TABLE: dict[str, Reference] = {
    name: Reference(
        name,
        info.family,
        info.dialect,
        reference_call(info.reference),
        info.sample,
        info.variants,
        info.grads,
    )
    for name, info in registry.LOSSES.items()
    if info.variants
}

# The families with a suite of their own over this table's rows (the others: test_elementwise).
FAMILY_SUITES = {"regression": "test_regression.py"}
REFERENCES: dict[str, Reference] = {n: r for n, r in TABLE.items() if r.family == "regression"}
OTHER_REFERENCES = [n for n, r in TABLE.items() if r.family not in FAMILY_SUITES]

TORCH_LOSSES = [n for n, r in REFERENCES.items() if r.dialect == "torch"]
KERAS_LOSSES = [n for n, r in REFERENCES.items() if r.dialect == "keras"]


def loss_options(names=None):
    """``(name, option)`` pairs for pytest.mark.parametrize, with readable ids (the losses of
    ``REFERENCES`` by default)."""
    names = list(REFERENCES) if names is None else names
    return [
        pytest.param(name, option, id=f"{name}-{option.id}")
        for name in names
        for option in TABLE[name].options
    ]


def make_case(
    name: str, option: Option, shape: tuple[int, ...], dtype, seed: int = 0
) -> tuple[dict, dict]:
    """Inputs of ``name`` for ``option``: ``(arrays, kwargs)``, arrays in ``dtype``.

    ``arrays`` holds ``input``, ``target`` and, where the loss has them, ``var``; ``kwargs``
    holds the options, with ``weight`` as an array when the option asks for one.
    """
    ref = TABLE[name]
    rng = np.random.default_rng(seed)
    kwargs = dict(option.kwargs)
    arrays = {
        key: np.asarray(value).astype(dtype)
        for key, value in ref.sample(rng, shape, kwargs).items()
    }
    if option.var == "float":
        arrays["var"] = 0.7
    elif option.var is not None:
        var = np.asarray(_positive(rng, _var_shape(shape, option.var), 0.1, 2.0))
        if var.size > 2:
            var.flat[1] = 1e-8  # below eps: clamped (and the clamp is not differentiated)
        arrays["var"] = var.astype(dtype)
    if option.weight:
        kwargs["weight"] = np.asarray(rng.uniform(0.0, 2.0, shape)).astype(dtype)
    return arrays, kwargs


# --- running both sides ----------------------------------------------------------------------


def compute_dtype(dtype) -> np.dtype:
    """fastloss's compute dtype: float16 computes in float32."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)


def _tensor(value, dtype, requires_grad=False):
    t = torch()
    if type(value) is float:  # a Python float stays one (gaussian_nll_loss's float var)
        return value
    if hasattr(value, "detach"):  # a torch tensor given to fastloss
        value = value.detach().numpy()
    array = np.array(value, dtype=dtype, order="C")  # a native-order copy, 0-d kept
    tensor = t.from_numpy(array)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


@dataclass
class Result:
    """A loss and its gradients (``None`` where an argument has none), as NumPy values."""

    loss: object
    grads: dict


def run_reference(
    name: str, arrays: dict, kwargs: dict, reduction: str, *, grad: bool = True
) -> Result:
    """The reference library's loss and its autograd gradients on ``arrays``.

    Inputs are given to the reference in fastloss's compute dtype (float16 values as float32).
    For ``reduction="none"`` the gradients are those of the sum of the losses; ``grad=False``
    skips them (``grads`` is then empty).
    """
    ref = TABLE[name]
    dtype = compute_dtype(np.asarray(arrays["input"]).dtype)
    tensors = {
        key: _tensor(value, dtype, requires_grad=grad and key in ref.grads)
        for key, value in arrays.items()
    }
    options = {
        key: _tensor(value, dtype) if isinstance(value, np.ndarray) else value
        for key, value in kwargs.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcast warning is tested on fastloss
        loss = ref.reference(tensors, reduction, options, dtype)
    grads = {}
    if not grad:
        return Result(loss.numpy() if reduction == "none" else loss.numpy()[()], grads)
    total = loss if reduction != "none" else loss.sum()
    if total.requires_grad:
        total.backward()
    for key in ref.grads:
        tensor = tensors[key]
        if isinstance(tensor, float):
            grads[key] = None
        elif tensor.grad is None:
            grads[key] = np.zeros(tensor.shape, dtype)
        else:
            grads[key] = tensor.grad.numpy()
    value = loss.detach().numpy()
    return Result(value if reduction == "none" else value[()], grads)


def run_fastloss(name: str, arrays: dict, kwargs: dict, reduction: str, **extra) -> Result:
    """fastloss's fused loss and gradients, as a :class:`Result`."""
    ref = TABLE[name]
    loss, grad = ref.function(**arrays, **kwargs, reduction=reduction, return_grad=True, **extra)
    grads = grad if isinstance(grad, tuple) else (grad,)
    assert len(grads) == len(ref.grads)
    return Result(loss, dict(zip(ref.grads, grads, strict=True)))


# --- comparisons -----------------------------------------------------------------------------


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def rtol_for(dtype) -> float:
    """Relative tolerance of a comparison in ``dtype``: 1e-12 for float64, 1e-6 for float32."""
    return {8: 1e-12, 4: 1e-6, 2: 1e-3}[np.dtype(dtype).itemsize]


def _finite_max(*values) -> float:
    """The largest finite magnitude among ``values``, at least 1."""
    best = 1.0
    for value in values:
        a = np.asarray(value)
        if a.dtype.kind != "f":
            a = a.astype(np.float64)
        if a.size:
            best = max(best, float(np.max(np.abs(a), where=np.isfinite(a), initial=0.0)))
    return best


def assert_close(actual, expected, *, rtol: float, atol: float = 0.0, what: str = "") -> None:
    """``actual`` within ``rtol``/``atol`` of ``expected``; NaN where, and only where, it is
    NaN in ``expected``; infinities equal."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def assert_matches(
    result: Result,
    expected: Result,
    arrays: dict,
    reduction: str,
    *,
    dtype,
    terms=None,
    grad_dtype=None,
    tol_dtype=None,
    strict_shapes: bool = True,
) -> None:
    """Compare a fastloss :class:`Result` with the reference's.

    Values: ``rtol_for(tol_dtype)`` relative (``tol_dtype`` defaults to ``dtype``), plus an
    absolute slack of a few ulps of the largest quantity that can cancel (an input, an element
    loss: ``terms``, the reference's elementwise losses), times log2(n) for a mean and
    n log2(n) for a sum (the reference sums float32 in float32, fastloss in float64).
    Gradients: elementwise ``rtol``, plus a few ulps of the largest gradient or input, scaled
    like the gradient (1/n for the mean). Gradients have the shapes of their arguments
    (``strict_shapes=False`` lets a gradient of the right size but another shape through, for
    a test about something else).
    """
    dtype = np.dtype(dtype)
    grad_dtype = np.dtype(grad_dtype or dtype)
    tol_dtype = np.dtype(tol_dtype or dtype)
    shape = np.broadcast_shapes(np.shape(arrays["input"]), np.shape(arrays["target"]))
    n = max(math.prod(shape), 1)
    scale = 1.0 / n if reduction == "mean" else 1.0
    if reduction == "none":
        assert isinstance(result.loss, np.ndarray) and result.loss.dtype == dtype, (
            f"loss: expected an array of {dtype}, got {result.loss!r}"
        )
    else:
        assert isinstance(result.loss, np.generic) and result.loss.dtype == dtype, (
            f"loss: expected a NumPy scalar of {dtype}, got {result.loss!r}"
        )
    atol = value_atol(terms if terms is not None else expected.loss, arrays, reduction, tol_dtype)
    assert_close(result.loss, expected.loss, rtol=rtol_for(tol_dtype), atol=atol, what="loss")
    coarse = max(tol_dtype, grad_dtype, key=lambda d: eps(d))
    for key, want in expected.grads.items():
        got = result.grads[key]
        if want is None:
            assert got is None, f"grad {key}: expected None, got {got!r}"
            continue
        assert isinstance(got, np.ndarray), f"grad {key}: {type(got)}"
        assert got.dtype == grad_dtype, f"grad {key}: dtype {got.dtype}, expected {grad_dtype}"
        if not strict_shapes and got.shape != want.shape and got.size == want.size:
            got = got.reshape(want.shape)
        largest = _finite_max(np.asarray(want) / scale, *arrays.values())
        gatol = 16 * eps(coarse) * scale * largest
        if got.size and got.size < n:  # summed over broadcast dimensions
            gatol *= n // got.size
        assert_close(got, want, rtol=rtol_for(coarse), atol=gatol, what=f"grad {key}")


def value_atol(terms, arrays: dict, reduction: str, dtype) -> float:
    """Absolute slack of a loss value: a few ulps of the largest element loss or input, times
    log2(n) for a mean and n log2(n) for a sum."""
    shape = np.broadcast_shapes(np.shape(arrays["input"]), np.shape(arrays["target"]))
    n = max(math.prod(shape), 1)
    atol = 16 * eps(dtype) * _finite_max(terms, *arrays.values())
    if reduction != "none":
        atol *= max(math.log2(n), 1.0) * (n if reduction == "sum" else 1)
    return atol


def check_against_reference(
    name: str, arrays: dict, kwargs: dict, reduction: str, **compare
) -> Result:
    """Run fastloss and its reference on the same inputs and compare values and gradients;
    also check that the loss without ``return_grad`` equals the fused one (to a few ulps: the
    forward-only point function may round differently).

    Keras 3.15 on its torch backend computes float64 losses partly in float32 (``ops.mean``
    and ``ops.maximum`` return float32-rounded values), so float64 results of the Keras-dialect
    losses are compared with Keras at float32 tolerance; their float64 digits are checked in
    ``test_regression.py`` against scikit-learn / NumPy and finite differences.
    """
    input_dtype = np.asarray(arrays["input"]).dtype
    dtype = compute_dtype(input_dtype)
    result = run_fastloss(name, arrays, kwargs, reduction)
    expected = run_reference(name, arrays, kwargs, reduction)
    terms = expected.loss
    if reduction != "none":
        terms = run_reference(name, arrays, kwargs, "none", grad=False).loss
    # gradients come back in the input's floating dtype, native byte order
    grad_dtype = input_dtype.newbyteorder("=") if input_dtype.kind == "f" else dtype
    compare.setdefault("grad_dtype", grad_dtype)
    if TABLE[name].dialect == "keras":
        compare.setdefault("tol_dtype", np.float32)
    assert_matches(result, expected, arrays, reduction, dtype=dtype, terms=terms, **compare)
    alone = TABLE[name].function(**arrays, **kwargs, reduction=reduction)
    atol = value_atol(terms, arrays, reduction, dtype) / 2
    assert_close(alone, result.loss, rtol=8 * eps(dtype), atol=atol, what="loss without grad")
    return result
