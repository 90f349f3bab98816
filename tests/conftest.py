"""Shared helpers of the test suite: the reference of every loss, inputs, comparisons.

``REFERENCES`` maps each public loss to the real library that defines its semantics (numbagg's
``test/conftest.py`` keeps such a map): ``torch.nn.functional`` for the torch-dialect losses,
Keras 3 on its torch backend for the Keras-semantics ones. ``run_reference`` evaluates it with
torch autograd, so values and gradients come from the library itself, never from a
re-implementation here. One parametrised suite (``test_regression.py``) runs every entry.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

# Keras 3 picks its backend at import: the references run on torch, which gives autograd.
os.environ["KERAS_BACKEND"] = "torch"

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


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _positive(rng, shape, low=0.05, high=3.0):
    return rng.uniform(low, high, shape)


def _counts(rng, shape):
    return rng.poisson(2.0, shape).astype(np.float64)


def _var_shape(shape: tuple[int, ...], mode: str) -> tuple[int, ...] | None:
    """The shape of ``var`` for gaussian_nll_loss's ``mode`` on an input of ``shape``."""
    if mode == "same":
        return shape
    if mode == "short":  # one dimension short: torch unsqueezes it
        return shape[:-1] if shape else None
    if mode == "dim1":  # one dimension of size 1 (homoscedastic)
        if not shape:
            return None
        dims = [i for i, s in enumerate(shape) if s != 1]
        if not dims:
            return None
        changed = list(shape)
        changed[dims[-1]] = 1
        return tuple(changed)
    raise ValueError(mode)


@dataclass(frozen=True)
class Option:
    """One set of keyword arguments of a loss, plus how to build its inputs.

    ``kwargs`` go to fastloss and to the reference alike; ``weight`` asks for a per-element
    weight array; ``var`` is gaussian_nll_loss's variance layout (``"same"``, ``"short"``,
    ``"dim1"``, or ``"float"`` for a Python float).
    """

    id: str
    kwargs: dict = field(default_factory=dict)
    weight: bool = False
    var: str | None = None

    def applies(self, shape: tuple[int, ...]) -> bool:
        return self.var in (None, "float") or _var_shape(shape, self.var) is not None


@dataclass(frozen=True)
class Reference:
    """A loss under test: the fastloss function, its reference, its inputs and options."""

    name: str
    dialect: str  # "torch" or "keras"
    reference: Callable  # (tensors, reduction, kwargs, dtype) -> torch loss tensor
    make_input: Callable  # (rng, shape, kwargs) -> float64 array
    make_target: Callable
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


def _poisson_input(rng, shape, kwargs):
    if kwargs.get("log_input", True):
        return _normal(rng, shape)
    return _positive(rng, shape)


def _msle_input(rng, shape, kwargs):
    # Mostly positive, some negative: Keras clamps y_pred at epsilon (zero gradient there).
    return rng.uniform(-0.5, 3.0, shape)


REFERENCES: dict[str, Reference] = {
    ref.name: ref
    for ref in [
        Reference(
            "mse_loss",
            "torch",
            _torch_reference("mse_loss"),
            lambda rng, shape, kw: _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
            (Option("default"), Option("weight", weight=True)),
        ),
        Reference(
            "l1_loss",
            "torch",
            _torch_reference("l1_loss"),
            lambda rng, shape, kw: _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
            (Option("default"), Option("weight", weight=True)),
        ),
        Reference(
            "huber_loss",
            "torch",
            _torch_reference("huber_loss"),
            lambda rng, shape, kw: 2 * _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
            (
                Option("default"),
                Option("delta0.5", {"delta": 0.5}),
                Option("delta2.5", {"delta": 2.5}),
                Option("weight-delta0.75", {"delta": 0.75}, weight=True),
            ),
        ),
        Reference(
            "smooth_l1_loss",
            "torch",
            _torch_reference("smooth_l1_loss"),
            lambda rng, shape, kw: 2 * _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
            (
                Option("default"),
                Option("beta0.5", {"beta": 0.5}),
                Option("beta2", {"beta": 2.0}),
                Option("beta0", {"beta": 0.0}),
            ),
        ),
        Reference(
            "poisson_nll_loss",
            "torch",
            _torch_reference("poisson_nll_loss"),
            _poisson_input,
            lambda rng, shape, kw: _counts(rng, shape),
            (
                Option("default"),
                Option("full", {"full": True}),
                Option("rate", {"log_input": False}),
                Option("rate-full", {"log_input": False, "full": True}),
                Option("rate-eps", {"log_input": False, "eps": 1e-3}),
            ),
        ),
        Reference(
            "gaussian_nll_loss",
            "torch",
            _torch_reference("gaussian_nll_loss"),
            lambda rng, shape, kw: _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
            (
                Option("var", var="same"),
                Option("var-short", var="short"),
                Option("var-dim1", var="dim1"),
                Option("var-float", var="float"),
                Option("full", {"full": True}, var="same"),
                Option("eps", {"eps": 0.05}, var="same"),
                Option("full-dim1", {"full": True}, var="dim1"),
            ),
            grads=("input", "var"),
        ),
        Reference(
            "rmse_loss",
            "keras",
            _rmse_reference,
            lambda rng, shape, kw: _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
        ),
        Reference(
            "log_cosh_loss",
            "keras",
            _keras_reference("LogCosh"),
            lambda rng, shape, kw: 3 * _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
        ),
        Reference(
            "msle_loss",
            "keras",
            _keras_reference("MeanSquaredLogarithmicError"),
            _msle_input,
            lambda rng, shape, kw: _positive(rng, shape, 0.0, 5.0),
        ),
        Reference(
            "mape_loss",
            "keras",
            _keras_reference("MeanAbsolutePercentageError"),
            lambda rng, shape, kw: _normal(rng, shape),
            lambda rng, shape, kw: _normal(rng, shape),
        ),
    ]
}

TORCH_LOSSES = [n for n, r in REFERENCES.items() if r.dialect == "torch"]
KERAS_LOSSES = [n for n, r in REFERENCES.items() if r.dialect == "keras"]


def loss_options(names=None):
    """``(name, option)`` pairs for pytest.mark.parametrize, with readable ids."""
    names = list(REFERENCES) if names is None else names
    return [
        pytest.param(name, option, id=f"{name}-{option.id}")
        for name in names
        for option in REFERENCES[name].options
    ]


def make_case(
    name: str, option: Option, shape: tuple[int, ...], dtype, seed: int = 0
) -> tuple[dict, dict]:
    """Inputs of ``name`` for ``option``: ``(arrays, kwargs)``, arrays in ``dtype``.

    ``arrays`` holds ``input``, ``target`` and, where the loss has them, ``var``; ``kwargs``
    holds the options, with ``weight`` as an array when the option asks for one.
    """
    ref = REFERENCES[name]
    rng = np.random.default_rng(seed)
    kwargs = dict(option.kwargs)
    arrays = {
        "input": np.asarray(ref.make_input(rng, shape, kwargs)).astype(dtype),
        "target": np.asarray(ref.make_target(rng, shape, kwargs)).astype(dtype),
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
    ref = REFERENCES[name]
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
    ref = REFERENCES[name]
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
    if REFERENCES[name].dialect == "keras":
        compare.setdefault("tol_dtype", np.float32)
    assert_matches(result, expected, arrays, reduction, dtype=dtype, terms=terms, **compare)
    alone = REFERENCES[name].function(**arrays, **kwargs, reduction=reduction)
    atol = value_atol(terms, arrays, reduction, dtype) / 2
    assert_close(alone, result.loss, rtol=8 * eps(dtype), atol=atol, what="loss without grad")
    return result
