"""kl_div against torch.nn.functional.kl_div (values, autograd gradients, warnings).

float32 and float64, every reduction ("batchmean" included), ``log_target``, 0-d to 3-d shapes
with empty ones, zeros in the target (torch's xlogy), broadcasting, NaN and infinities, array
kinds, ``out=``, torch's warning for ``"mean"`` and its legacy flags.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import FLOATS, assert_close, eps, torch

from fastloss import divergence

REDUCTIONS = ("mean", "batchmean", "sum", "none")
SHAPES = [(), (0,), (1,), (3,), (1000,), (3, 4), (0, 3), (3, 0), (2, 0, 3), (2, 3, 5)]
DTYPE_IDS = {np.float32: "f32", np.float64: "f64"}


def _id(value):
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if value else "0d"
    return DTYPE_IDS.get(value)


def _rtol(dtype) -> float:
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def reference(x, t, reduction, log_target, dtype):
    """torch's kl_div and the autograd gradient of its input (of the sum for "none")."""
    X = torch().from_numpy(np.array(x, dtype=dtype)).requires_grad_(True)
    T = torch().from_numpy(np.array(t, dtype=dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = torch().nn.functional.kl_div(X, T, reduction=reduction, log_target=log_target)
    total = loss if reduction != "none" else loss.sum()
    if total.requires_grad:
        total.backward()
    grad = X.grad.numpy() if X.grad is not None else np.zeros(X.shape, dtype)
    value = loss.detach().numpy()
    return (value if reduction == "none" else value[()]), grad


def fast(x, t, reduction, log_target, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return divergence.kl_div(
            x, t, reduction=reduction, log_target=log_target, return_grad=True, **extra
        )


def check(x, t, reduction, log_target=False, dtype=None):
    dtype = np.dtype(dtype or np.asarray(x).dtype)
    loss, grad = fast(x, t, reduction, log_target)
    want_loss, want_grad = reference(x, t, reduction, log_target, dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype
    terms = np.abs(reference(x, t, "none", log_target, dtype)[0]).astype(np.float64)
    terms = terms[np.isfinite(terms)]
    scale = terms.max(initial=1.0) if reduction == "none" else max(terms.sum(), 1.0)
    if reduction == "mean":
        scale /= max(terms.size, 1)
    rtol = _rtol(dtype)
    assert_close(loss, want_loss, rtol=rtol, atol=32 * eps(dtype) * scale, what="loss")
    assert grad.shape == np.shape(x) and grad.dtype == dtype
    gscale = np.abs(want_grad[np.isfinite(want_grad)]).max(initial=0.0)
    assert_close(grad, want_grad, rtol=rtol, atol=8 * eps(dtype) * gscale, what="grad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = divergence.kl_div(x, t, reduction=reduction, log_target=log_target)
    assert_close(alone, loss, rtol=8 * eps(dtype), what="loss without grad")
    return loss, grad


def make(shape, dtype, log_target, seed=0):
    rng = np.random.default_rng(seed)
    x = np.log(rng.uniform(0.01, 1.0, shape))
    if log_target:
        t = np.log(rng.uniform(0.01, 1.0, shape))
    else:
        t = rng.uniform(0.0, 1.0, shape)
        if t.size > 3:
            t.flat[::4] = 0.0  # xlogy(0, 0) = 0
    return x.astype(dtype), t.astype(dtype)


@pytest.mark.parametrize("log_target", [False, True], ids=["prob", "log"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_matches_torch(shape, dtype, reduction, log_target):
    x, t = make(shape, dtype, log_target, seed=len(shape) + sum(shape))
    check(x, t, reduction, log_target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_batchmean_divides_by_the_batch(reduction):
    """batchmean: the sum over input.shape[0]; a 0-d input is not divided; an empty batch is
    NaN (0 / 0), an empty row 0."""
    x, t = make((4, 5), np.float64, False)
    s = divergence.kl_div(x, t, reduction="sum")
    assert_close(divergence.kl_div(x, t, reduction="batchmean"), s / 4, rtol=1e-15)
    x0, t0 = np.float64(-0.5), np.float64(0.25)
    assert divergence.kl_div(x0, t0, reduction="batchmean") == divergence.kl_div(
        x0, t0, reduction="sum"
    )
    for shape in [(0, 3), (0,)]:
        loss, grad = divergence.kl_div(
            np.zeros(shape), np.zeros(shape), reduction="batchmean", return_grad=True
        )
        assert np.isnan(loss) and grad.shape == shape
    assert divergence.kl_div(np.zeros((3, 0)), np.zeros((3, 0)), reduction="batchmean") == 0


BROADCASTS = [((3, 4), (4,)), ((4,), (3, 4)), ((3, 1), (3, 4)), ((2, 3, 4), (3, 1)), ((), (3,))]


@pytest.mark.parametrize("log_target", [False, True], ids=["prob", "log"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{_id(s[0])}-{_id(s[1])}")
def test_broadcasting_like_torch(shapes, reduction, log_target):
    """target broadcasts against input without a warning; the gradient has input's shape
    (summed over the broadcast); batchmean divides by input.shape[0]."""
    rng = np.random.default_rng(5)
    x = np.log(rng.uniform(0.01, 1.0, shapes[0]))
    t = rng.uniform(0.0, 1.0, shapes[1])
    if log_target:
        t = np.log(t + 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        divergence.kl_div(x, t, reduction="sum")
    check(x, t, reduction, log_target)


@pytest.mark.parametrize("log_target", [False, True], ids=["prob", "log"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_nan_and_inf(dtype, reduction, log_target):
    """NaN and the infinities as torch gives them: xlogy(0, 0) = 0, 0 * -inf = NaN, log of a
    negative target NaN, and the gradient -t (or -exp(t)) whatever the input."""
    x = np.array([1.0, 2.0, 3.0, np.nan, -np.inf, np.inf, -1.0, 0.5], dtype)
    t = np.array([0.0, -1.0, np.inf, 0.0, 0.0, 0.5, np.nan, -np.inf], dtype)
    check(x, t, reduction, log_target)


def test_mean_warns_like_torch():
    x, t = make((3, 4), np.float64, False)
    with pytest.warns(UserWarning) as ours:
        divergence.kl_div(x, t)
    with pytest.warns(UserWarning) as theirs:
        torch().nn.functional.kl_div(torch().tensor(x), torch().tensor(t))
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert ours[0].filename == __file__  # points at the caller
    for reduction in ("sum", "batchmean", "none"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            divergence.kl_div(x, t, reduction=reduction)


@pytest.mark.parametrize("size_average, reduce", [(False, None), (None, False), (True, True)])
def test_legacy_flags(size_average, reduce):
    """The legacy flags resolve as torch resolves them, with its deprecation warning and
    without the one for "mean"."""
    x, t = make((3, 4), np.float64, False)
    with pytest.warns(UserWarning) as ours:
        got = divergence.kl_div(x, t, size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning) as theirs:
        want = torch().nn.functional.kl_div(
            torch().tensor(x), torch().tensor(t), size_average=size_average, reduce=reduce
        )
    assert len(ours) == len(theirs) == 1 and "deprecated" in str(ours[0].message)
    assert_close(got, want.numpy(), rtol=1e-12)


def test_bad_arguments():
    x, t = make((3,), np.float64, False)
    with pytest.raises(ValueError, match="reduction"):
        divergence.kl_div(x, t, reduction="average")
    with pytest.raises(ValueError, match="shape"):
        divergence.kl_div(x, np.ones(4), reduction="sum")
    with pytest.raises(TypeError, match="input"):
        divergence.kl_div(np.array(["a", "b", "c"]), t, reduction="sum")
    with pytest.raises(TypeError, match="target"):
        divergence.kl_div(x, np.array([1 + 1j, 0, 0]), reduction="sum")


def test_integer_targets_are_cast():
    """torch refuses integral targets ("Integral inputs not supported"); fastloss casts."""
    x, _ = make((3, 4), np.float32, False)
    t = np.random.default_rng(1).integers(0, 3, (3, 4))
    for reduction in REDUCTIONS:
        got = fast(x, t, reduction, False)
        want = fast(x, t.astype(np.float32), reduction, False)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("kind", ["strided", "fortran", "readonly", "torch", "list", "float16"])
def test_array_kinds(kind):
    x, t = make((4, 6), np.float32, False, seed=3)

    def convert(a):
        if kind == "strided":
            wide = np.zeros((4, 12), a.dtype)
            wide[:, ::2] = a
            return wide[:, ::2]
        if kind == "fortran":
            return np.asfortranarray(a)
        if kind == "readonly":
            b = a.copy()
            b.flags.writeable = False
            return b
        if kind == "torch":
            return torch().from_numpy(a.copy())
        if kind == "float16":
            return a.astype(np.float16)
        return a.tolist()

    # read-only arrays are kernel signatures of their own: one reduction keeps compiling short
    for reduction in ("batchmean",) if kind == "readonly" else REDUCTIONS:
        got = fast(convert(x), convert(t), reduction, False)
        if kind == "float16":
            base = [convert(a).astype(np.float32) for a in (x, t)]
            want = fast(*base, reduction, False)
            assert got[1].dtype == np.float16
            np.testing.assert_array_equal(got[1], want[1].astype(np.float16))
            np.testing.assert_array_equal(got[0], want[0])
            continue
        dtype = np.float64 if kind == "list" else np.float32
        want = fast(x.astype(dtype), t.astype(dtype), reduction, False)
        assert np.asarray(got[0]).dtype == dtype and got[1].dtype == dtype
        rtol = 4 * eps(dtype)
        assert_close(got[0], want[0], rtol=rtol, atol=rtol, what=f"{kind} loss")
        assert_close(got[1], want[1], rtol=rtol, atol=rtol, what=f"{kind} grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_and_in_place(reduction):
    x, t = make((5, 4), np.float64, True, seed=8)
    want = fast(x, t, reduction, True)
    out = np.empty_like(x)
    loss, grad = fast(x, t, reduction, True, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, want[1])
    loss, grad = fast(x, t, reduction, True, out=x)
    assert grad is x
    np.testing.assert_array_equal(x, want[1])
    np.testing.assert_array_equal(loss, want[0])


def test_parallel_kernel():
    """Above the parallel threshold of 2**20 elements."""
    x, t = make((1_200_000,), np.float32, False, seed=4)
    check(x, t, "batchmean")


def test_registry_inputs():
    for dtype in (np.float32, np.float64):
        inputs = divergence.log_probability_inputs(np.random.default_rng(0), 1000, dtype)
        loss = divergence.kl_div(**inputs, reduction="batchmean")
        assert loss.dtype == dtype and np.isfinite(loss) and loss >= 0
