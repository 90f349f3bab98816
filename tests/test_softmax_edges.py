"""Edge cases of the softmax family found in review: aliasing of ``out`` with operands other
than the input, non-finite class weights and options, empty class axes, bad labels."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
F = torch.nn.functional

from fastloss import softmax as sm  # noqa: E402


def _torch_ce(x, t, **kw):
    xt = torch.tensor(x, requires_grad=True)
    kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    loss = F.cross_entropy(xt, torch.tensor(t), **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name", ["categorical_crossentropy", "categorical_focal_crossentropy"])
def test_keras_out_overlapping_the_target(name):
    rng = np.random.default_rng(0)
    x = rng.random((4, 5)) + 0.05
    buf = rng.random((5, 5))
    buf /= buf.sum(1, keepdims=True)
    fn = getattr(sm, name)
    want_loss, want_grad = fn(x, buf[:-1].copy(), return_grad=True)
    loss, grad = fn(x, buf[:-1], return_grad=True, out=buf[1:])
    assert loss == want_loss
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_out_sharing_memory_with_weight(name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 4))
    t = np.array([0, 1, 2, 3])
    b = np.zeros((5, 4))
    w = b[0]
    w[:] = rng.random(4) + 0.5
    fn = getattr(sm, name)
    want_loss, want_grad = fn(x, t, weight=w.copy(), return_grad=True)
    loss, grad = fn(x, t, weight=w, return_grad=True, out=b[1:])
    assert loss == want_loss
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize(
    "bad, smoothing",
    [(np.nan, 0.0), (np.inf, 0.0), (np.nan, 0.1), (np.inf, 0.1)],
    ids=["nan", "inf", "nan-ls", "inf-ls"],
)
def test_non_finite_weight_poisons_only_its_rows(bad, smoothing):
    """torch: a NaN/inf class weight reaches only rows of that class (without smoothing)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4))
    t = np.array([0, 1, 2, 3, 1])
    w = np.array([bad, 1.0, 1.0, 1.0])
    want_loss, want_grad = _torch_ce(x, t, weight=w, reduction="sum", label_smoothing=smoothing)
    loss, grad = sm.cross_entropy(
        x, t, weight=w, reduction="sum", label_smoothing=smoothing, return_grad=True
    )
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-15, equal_nan=True)
    if smoothing == 0:
        assert np.isfinite(grad[1:]).all()


def test_infinite_softcap_is_no_cap():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    want = sm.cross_entropy(x, t, return_grad=True)
    got = sm.cross_entropy(x, t, softcap=np.inf, return_grad=True)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_no_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one class"):
        sm.cross_entropy(np.zeros((2, 0)), np.full(2, -100))
    with pytest.raises(ValueError, match="at least one class"):
        sm.categorical_crossentropy(np.zeros((2, 0)), np.zeros((2, 0)))


def test_big_endian_out_is_named_as_such():
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(">f8")
    with pytest.raises(ValueError, match="native byte order"):
        sm.cross_entropy(x, [0, 1, 2], return_grad=True, out=x)


def test_infinite_gamma_is_refused():
    with pytest.raises(ValueError, match="gamma"):
        sm.focal_loss(np.zeros((2, 3)), [0, 1], gamma=np.inf)
    with pytest.raises(ValueError, match="gamma"):
        sm.categorical_focal_crossentropy(np.full((2, 3), 1 / 3), np.eye(3)[:2], gamma=np.inf)


def test_nan_label_is_named():
    with pytest.raises(ValueError, match="NaN at position \\(1,\\)"):
        sm.sparse_categorical_crossentropy(np.full((2, 3), 1 / 3), np.array([0.0, np.nan]))


def test_focal_loss_of_confident_rows_keeps_its_precision():
    """A logit gap of 30 (ce ~ 2e-13, the focal factor ~ 1e-19): value and gradient still
    match torch's to 12 digits."""
    x = np.array([[30.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    t = np.array([0, 2])
    xt = torch.tensor(x, requires_grad=True)
    ce = F.cross_entropy(xt, torch.tensor(t), reduction="none")
    want = 0.5 * (-torch.expm1(-ce)) ** 1.5 * ce
    want.sum().backward()
    loss, grad = sm.focal_loss(x, t, alpha=0.5, gamma=1.5, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12)
    # the target's entry, -k (1 - p_t), is formed by a cancelling subtraction by torch and here
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-9, atol=1e-35)


@pytest.mark.parametrize(
    ("dtype", "big"), [(np.float32, 2e19), (np.float64, 1e155)], ids=["f32", "f64"]
)
@pytest.mark.parametrize(
    "function", ["cross_entropy", "focal_loss", "sparse_categorical_crossentropy"]
)
def test_huge_logits_without_z_loss_are_not_nan(function, dtype, big):
    """lse**2 overflows past ~1.8e19 (float32) or ~1.3e154 (float64); without a z-loss it must
    not enter (0 * inf was NaN). torch gives log 2 for two equal logits."""
    x = np.full((1, 2), big, dtype)
    options = {"from_logits": True} if function.startswith("sparse") else {}
    loss, grad = getattr(sm, function)(x, [0], return_grad=True, **options)
    xt = torch.tensor(x, requires_grad=True)
    ce = F.cross_entropy(xt, torch.tensor([0]))
    ce.backward()
    if function == "focal_loss":  # (1 - 1/2)**2 * log 2
        np.testing.assert_allclose(loss, 0.25 * ce.item(), rtol=1e-6)
        assert np.all(np.isfinite(grad))
    else:
        np.testing.assert_allclose(loss, ce.item(), rtol=1e-6)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-6)


def test_label_smoothing_over_many_classes_sums_in_float64():
    """At 2**17 classes a float32 running sum of m - x_c was 3e-5 off (torch: 4.5e-7)."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 1 << 17)) * 10).astype(np.float32)
    t = np.array([3, 5])
    loss = sm.cross_entropy(x, t, label_smoothing=0.1)
    want = F.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(t),
                           label_smoothing=0.1).item()  # fmt: skip
    assert abs(float(loss) - want) / want < 2e-7
