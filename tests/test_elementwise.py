"""Every registered elementwise loss outside the regression family, against its reference.

The losses come from ``conftest.TABLE`` (read from the registry rows: their reference, test
inputs, option sets and gradients), less the families that have a suite of their own
(``conftest.FAMILY_SUITES``: ``test_regression.py`` runs the regression family's). A loss
registered in another family is therefore tested here without an edit: values and autograd
gradients against the real library for float32/float64, every reduction and option set, 0-d to
3-d shapes and sizes to 1.5 million (the parallel kernel), NaN and infinities, broadcasting
(with torch's warning or without it, as torch does), array kinds, float16, ``out=`` and in
place, empty inputs, torch's legacy flags, the signature against torch's, the second
derivative's bits, its generated kernels (vectorised, no calls), and the CUDA path under Numba's
simulator and compiled for the real device target (``elementwise_sim_cases.py``,
``elementwise_compile_cases.py``, in processes of their own).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FLOATS,
    OTHER_REFERENCES,
    REDUCTIONS,
    SHAPES,
    TABLE,
    assert_close,
    check_against_reference,
    eps,
    loss_options,
    make_case,
    run_fastloss,
    run_reference,
    torch,
)
from test_regression import KINDS, _id, _kind, _seed

import fastloss
from fastloss.registry import LOSSES

HERE = Path(__file__).resolve().parent
NAMES = OTHER_REFERENCES
# Where fastloss is finite by design and the reference is not (documented in the loss's
# docstring): no infinite input in the comparison with the reference.
FINITE_BEYOND_REFERENCE = {"soft_margin_loss"}  # torch's log1p(exp(-y x)) overflows


def test_there_are_losses_to_test():
    assert {"hinge_embedding_loss", "soft_margin_loss"} <= set(NAMES)


def _cases():
    for param in loss_options(NAMES):
        name, option = param.values
        for shape in SHAPES:
            if option.applies(shape):
                yield pytest.param(name, option, shape, id=f"{param.id}-{_id(shape)}")


def _first(name, shape, dtype, seed=0):
    """The inputs of ``name``'s first option set."""
    return make_case(name, TABLE[name].options[0], shape, dtype, seed=seed)


# --- the differential suite ------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name, option, shape", list(_cases()))
def test_matches_reference(name, option, shape, dtype, reduction):
    arrays, kwargs = make_case(name, option, shape, dtype, seed=_seed(name, option.id, shape))
    check_against_reference(name, arrays, kwargs, reduction)


@pytest.mark.parametrize(
    "n, reduction, dtype",
    [
        (1_500_000, "mean", np.float32),  # the parallel kernel, from 2**20 elements
        (1_500_000, "mean", np.float64),
        (1_500_000, "none", np.float32),
        (10**6, "sum", np.float32),  # the serial kernel on a large input
    ],
    ids=["1.5M-f32", "1.5M-f64", "1.5M-none-f32", "1M-sum-f32"],
)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_large(name, n, reduction, dtype):
    arrays, kwargs = _first(name, (n,), dtype, seed=_seed(name, n))
    check_against_reference(name, arrays, kwargs, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_as_the_reference(name, dtype, reduction):
    """NaN in the input and in the target, infinities (where the reference is finite too),
    inf - inf: values and gradients as the reference gives them."""
    arrays, kwargs = _first(name, (12,), dtype, seed=3)
    x, t = arrays["input"], arrays["target"]
    x[1] = t[3] = np.nan
    if name not in FINITE_BEYOND_REFERENCE:
        x[5], x[9] = np.inf, -np.inf
        t[7] = -np.inf
        x[10] = t[10] = np.inf
    check_against_reference(name, arrays, kwargs, reduction)
    assert np.isnan(TABLE[name].function(**arrays, **kwargs, reduction="none")[1])


# --- broadcasting, array kinds, dtypes -------------------------------------------------------

BROADCASTS = [((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 1), (3, 4)), ((4,), (2, 3, 4)), ((), (3,))]


@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{_id(s[0])}-{_id(s[1])}")
@pytest.mark.parametrize("name", NAMES)
def test_broadcasting_and_its_warning_like_torch(name, shapes):
    """Targets broadcast against the input as in torch, with torch's size warning where torch
    gives it and silently where it does not, and a ``ValueError`` naming the target where
    torch refuses the shapes; the gradient has the input's shape."""
    rng = np.random.default_rng(1)
    input_shape, target_shape = shapes
    arrays = {
        "input": TABLE[name].sample(rng, input_shape, {})["input"],
        "target": TABLE[name].sample(rng, target_shape, {})["target"],
    }
    for reduction in REDUCTIONS:
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            try:
                run_reference(name, arrays, {}, reduction, grad=False)
            except RuntimeError:
                with pytest.raises(ValueError, match="^target: .*shape"):
                    TABLE[name].function(**arrays, reduction=reduction, return_grad=True)
                continue
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            TABLE[name].function(**arrays, reduction=reduction)
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_against_reference(name, arrays, {}, reduction)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", NAMES)
def test_array_kinds(name, dtype, kind, tmp_path):
    """Views, Fortran order, big-endian, read-only, memmaps, torch tensors, lists: the numbers
    of a plain C-contiguous array."""
    arrays, kwargs = _first(name, (4, 5), dtype, seed=11)
    other = _kind(arrays, kind, tmp_path)
    if kind == "list":  # Python floats are float64
        arrays = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
        dtype = np.float64
    rtol = 4 * eps(dtype)  # Fortran order sums in another order
    for reduction in ("mean", "none"):
        got = run_fastloss(name, other, kwargs, reduction)
        want = run_fastloss(name, arrays, kwargs, reduction)
        assert np.asarray(got.loss).dtype == dtype
        assert_close(got.loss, want.loss, rtol=rtol, atol=rtol, what=f"{kind} loss")
        for key, grad in want.grads.items():
            assert isinstance(got.grads[key], np.ndarray) and got.grads[key].dtype == dtype
            assert_close(got.grads[key], grad, rtol=rtol, atol=rtol, what=f"{kind} grad")
    check_against_reference(name, other, kwargs, "sum")


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", NAMES)
def test_float16_computes_in_float32(name, reduction):
    arrays, kwargs = _first(name, (5, 7), np.float16, seed=13)
    result = check_against_reference(name, arrays, kwargs, reduction)
    assert np.asarray(result.loss).dtype == np.float32
    assert result.grads["input"].dtype == np.float16


@pytest.mark.parametrize("name", NAMES)
def test_integer_inputs_compute_in_float64(name):
    arrays, kwargs = _first(name, (6,), np.float64, seed=14)
    integers = {k: np.round(4 * v).astype(np.int64) for k, v in arrays.items()}
    got = run_fastloss(name, integers, kwargs, "sum")
    assert np.asarray(got.loss).dtype == np.float64
    want = run_fastloss(name, {k: v.astype(np.float64) for k, v in integers.items()}, kwargs, "sum")
    np.testing.assert_array_equal(got.loss, want.loss)


# --- out=, in place, errors --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_out_receives_the_gradient(name, reduction):
    arrays, kwargs = _first(name, (4, 5), np.float64, seed=21)
    want = run_fastloss(name, arrays, kwargs, reduction)
    out = np.full(arrays["input"].shape, 7.0)
    got = run_fastloss(name, arrays, kwargs, reduction, out=out)
    assert got.grads["input"] is out
    np.testing.assert_array_equal(out, want.grads["input"])
    np.testing.assert_array_equal(got.loss, want.loss)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n", [20, 1_500_000])
@pytest.mark.parametrize("name", NAMES)
def test_out_is_input(name, n, reduction):
    """The gradient overwrites the input it is computed from (serial and parallel kernels)."""
    arrays, kwargs = _first(name, (n,), np.float32, seed=21)
    want = run_fastloss(name, arrays, kwargs, reduction)
    x = arrays["input"]
    got = run_fastloss(name, arrays, kwargs, reduction, out=x)
    assert got.grads["input"] is x
    rtol = 4 * eps(np.float32)
    assert_close(x, want.grads["input"], rtol=rtol, what="in-place gradient")
    assert_close(got.loss, want.loss, rtol=rtol, what="in-place loss")


@pytest.mark.parametrize("name", NAMES)
def test_errors_name_the_argument(name):
    arrays, kwargs = _first(name, (4, 5), np.float64)
    f = TABLE[name].function
    shape = arrays["input"].shape
    for out, error in [
        (np.empty(shape[::-1]), ValueError),
        (np.empty(shape, np.float32), (TypeError, ValueError)),
        (torch().zeros(shape, dtype=torch().float64), TypeError),
    ]:
        with pytest.raises(error, match="^out: "):
            f(**arrays, **kwargs, return_grad=True, out=out)
    with pytest.raises(ValueError, match="^out: "):
        f(**arrays, **kwargs, out=np.empty(shape))  # out without return_grad
    for reduction in ("average", "", None, "Mean"):  # torch's "elementwise_mean" is "mean"
        with pytest.raises(ValueError, match="^reduction: "):
            f(**arrays, **kwargs, reduction=reduction)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(3), np.ones(4), **kwargs)
    with pytest.raises(TypeError, match="^input"):
        f(np.array(["1", "2"]), np.ones(2), **kwargs)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=_id)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", NAMES)
def test_empty(name, dtype, shape):
    """No elements: the mean is NaN, the sum 0, ``none`` and the gradient empty (torch's)."""
    arrays, kwargs = _first(name, shape, dtype)
    for reduction in REDUCTIONS:
        check_against_reference(name, arrays, kwargs, reduction)
    mean = TABLE[name].function(**arrays, **kwargs)
    assert np.isnan(mean) and mean.dtype == dtype


LEGACY = [(None, False), (False, None), (False, False), (True, False), (False, True), (True, None)]


@pytest.mark.parametrize("size_average, reduce", LEGACY)
@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES[n].dialect == "torch"])
def test_legacy_reduction_flags_like_torch(name, size_average, reduce):
    """size_average / reduce resolve to torch's reduction, with a deprecation warning that
    points at the caller."""
    arrays, kwargs = _first(name, (2, 6), np.float64, seed=41)
    if "size_average" not in inspect.signature(TABLE[name].function).parameters:
        pytest.skip("no legacy flags (torch has none either)")
    with pytest.warns(UserWarning, match="deprecated") as record:
        got = TABLE[name].function(**arrays, size_average=size_average, reduce=reduce)
    assert record[0].filename == __file__
    tensors = {k: torch().tensor(v) for k, v in arrays.items()}
    with pytest.warns(UserWarning, match="deprecated"):
        want = getattr(torch().nn.functional, name)(
            **tensors, size_average=size_average, reduce=reduce
        )
    assert_close(got, want.numpy(), rtol=1e-12)


# --- the public function -----------------------------------------------------------------------

OURS_ONLY = ("return_grad", "return_hess", "out")


@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES[n].dialect == "torch"])
def test_signature_is_torchs(name):
    """Names, order, defaults and kinds of torch's parameters, then fastloss's keyword-only
    ``return_grad``, ``return_hess`` and ``out``."""
    ours = inspect.signature(TABLE[name].function).parameters
    theirs = inspect.signature(getattr(torch().nn.functional, name)).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for p in theirs.values():
        assert ours[p.name].default == p.default, p.name
        assert ours[p.name].kind == p.kind, p.name
    assert list(ours)[len(theirs) :] == list(OURS_ONLY)
    assert all(ours[p].kind == inspect.Parameter.KEYWORD_ONLY for p in OURS_ONLY)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_has_the_formula_gradient_and_an_example(name):
    doc = TABLE[name].function.__doc__
    for section in ("Parameters", "Returns", "Examples"):
        assert f"\n{section}\n{'-' * len(section)}\n" in doc
    assert ".. math::" in doc and r"\partial" in doc and ">>> " in doc
    assert f"``{LOSSES[name].reference}``" in doc.splitlines()[0]
    assert hasattr(fastloss, name)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_same_bits_with_and_without_the_second_derivative(name, reduction, dtype):
    arrays, kwargs = _first(name, (3, 70), dtype, seed=7)
    f = TABLE[name].function
    loss, grad = f(**arrays, **kwargs, reduction=reduction, return_grad=True)
    loss2, grad2, hess = f(**arrays, **kwargs, reduction=reduction, return_hess=True)
    assert np.asarray(loss).tobytes() == np.asarray(loss2).tobytes()
    assert grad.tobytes() == grad2.tobytes()
    assert hess.shape == grad.shape and hess.dtype == grad.dtype
    alone = f(**arrays, **kwargs, reduction=reduction)
    assert np.asarray(alone).tobytes() == np.asarray(loss).tobytes()


# --- the kernels -------------------------------------------------------------------------------


def _declared_specs():
    from fastloss import _elementwise

    for name in NAMES:
        declaration = LOSSES[name].declaration
        if declaration is not None:
            yield name, _elementwise.spec(*declaration.kernel)


@pytest.mark.parametrize("name", NAMES)
def test_declared_options_are_the_kernels_parameters(name):
    """A declaration's real options are its spec's ``params``, its bool options its
    ``flags``, in order."""
    for found, spec in _declared_specs():
        if found != name:
            continue
        options = LOSSES[name].declaration.options
        assert tuple(o.name for o in options if o.kind == "real") == spec.params
        assert tuple(o.name for o in options if o.kind == "bool") == spec.flags
        assert spec.hess


@pytest.mark.parametrize("kind", ["reduce_value_grad", "reduce_value_grad_hess"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_kernels_vectorise_without_calls(name, dtype, kind):
    from test_kernels import _flag_sets
    from test_kernels import test_fused_loop_vectorises_without_calls as vectorises

    for found, spec in _declared_specs():
        if found == name:
            for flags in _flag_sets(spec):
                vectorises(spec, flags, dtype, kind)


# --- the CUDA path -----------------------------------------------------------------------------

DEVICE_SUITES = [
    ("elementwise_sim_cases.py", True, 600),
    ("elementwise_compile_cases.py", False, 600),
]


@pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"
)
@pytest.mark.parametrize("file, simulator, timeout", DEVICE_SUITES, ids=["sim", "compile"])
def test_device_suite(file, simulator, timeout):
    """The device path of these losses under Numba's CUDA simulator, and their kernels lowered
    for the real CUDA target, each in a pytest process of its own (as
    ``test_cuda_suites.py`` runs the other families')."""
    from test_cuda_suites import _pytest

    _pytest(HERE / file, simulator=simulator, timeout=timeout)


def test_finite_beyond_reference_is_documented():
    for name in FINITE_BEYOND_REFERENCE:
        assert "overflow" in TABLE[name].function.__doc__
        big = np.array([-1000.0, 1000.0])
        loss, grad = TABLE[name].function(big, np.array([1.0, -1.0]), return_grad=True)
        assert math.isfinite(loss) and np.isfinite(grad).all()
