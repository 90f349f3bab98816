"""Hostile inputs to the softmax family on the row factory, compared with torch and Keras."""

import numpy as np
import pytest

import fastloss


@pytest.mark.parametrize("label", [np.inf, -np.inf, 1e30, -1e30, 2.0**63])
def test_sparse_float_label_outside_int64_is_reported_as_given(label):
    """A float label that does not fit int64 names itself, not the -2**63 it casts to."""
    x = np.zeros((2, 4))
    t = np.array([1.0, label])
    with pytest.raises(IndexError, match=r"target: class label .* at position \(1,\)") as err:
        fastloss.sparse_categorical_crossentropy(x, t, from_logits=True)
    assert "-9223372036854775808" not in str(err.value)
    assert repr(float(label)) in str(err.value)


def _keras_sparse(x, t, from_logits, ignore_class, reduction):
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    name = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}[reduction]
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=from_logits, ignore_class=ignore_class, reduction=name, dtype="float64"
    )
    xt = torch.tensor(x, requires_grad=True)
    value = loss(torch.tensor(t), xt)
    value.sum().backward()
    return value.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("labels", [[-100, 0, 2, 1, 2], [-100, -100, 2, 2, 2], [2, 2, 2, 2, 2]])
def test_sparse_ignore_class_still_skips_minus_100(from_logits, reduction, labels):
    """With ignore_class, Keras's torch backend still skips label -100 (0, counted in the
    mean) where the factory raised IndexError."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)) if from_logits else rng.random((5, 4))
    t = np.array(labels)
    want, want_grad = _keras_sparse(x, t, from_logits, 2, reduction)
    loss, grad = fastloss.sparse_categorical_crossentropy(
        x, t, from_logits=from_logits, ignore_class=2, reduction=reduction, return_grad=True
    )
    # Keras reduces under its mask in float32
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("ignore_class", [None, 2, -100])
def test_sparse_bad_label_error_names_ignore_class(ignore_class):
    x = np.zeros((3, 4))
    with pytest.raises(IndexError, match="class index 7") as err:
        fastloss.sparse_categorical_crossentropy(
            x, np.array([7, 0, 1]), from_logits=True, ignore_class=ignore_class
        )
    assert "ignore_index" not in str(err.value)
    if ignore_class is not None:
        assert f"ignore_class ({ignore_class})" in str(err.value)


@pytest.mark.parametrize("classes", [2, 3, 16, 17, 33])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_target_infinite_at_the_row_maximum(classes, value, dtype, weighted):
    """An infinite class probability (or weight) at the row's maximal logit: torch's loss is
    infinite; the factory's sum ``y_c (x_c - m)`` gave inf * 0 = NaN there."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(3, classes)).astype(dtype)
    p = rng.random((3, classes)).astype(dtype)
    top = np.argmax(x, axis=1)
    w = None
    if weighted:
        w = np.ones(classes, dtype)
        w[top[1]] = np.inf
        p[1, top[1]] = 0.5
    p[0, top[0]] = value
    p[2, top[2]] = value
    xt = torch.tensor(x, requires_grad=True)
    tw = None if w is None else torch.tensor(w)
    want = F.cross_entropy(xt, torch.tensor(p), weight=tw, reduction="none")
    want.sum().backward()
    loss, grad = fastloss.cross_entropy(x, p, weight=w, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    if not weighted:
        keras = pytest.importorskip("keras")
        k = keras.losses.categorical_crossentropy(
            torch.tensor(p), torch.tensor(x), from_logits=True
        )
        ours = fastloss.categorical_crossentropy(x, p, from_logits=True, reduction="none")
        np.testing.assert_allclose(ours, k.numpy(), rtol=1e-5)


def test_row_spec_refuses_unsummed_values_outside_a_sum_sweep():
    from fastloss.kernels.rows import RowSpec, Sweep

    def point(*args):
        return args[0]

    for sweep in (Sweep(point, 1, "max", summed=0), Sweep(point, 2, summed=3)):
        with pytest.raises(ValueError, match="sum sweep"):
            RowSpec("bad", 1, (sweep,), point, point, 1, (0,))
    assert Sweep(point, 3, summed=2).sums == 2 and Sweep(point, 3).sums == 3


@pytest.mark.parametrize("classes", [1, 15, 16, 17, 33])
def test_padded_lanes_and_picked_target_column_in_place(classes):
    # the padded last row of lanes and the target column written after the gradient sweep,
    # in place (the target's logit read before the sweep overwrites it), against torch
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(classes)
    x = rng.standard_normal((6, classes)).astype(np.float64) * 4
    target = rng.integers(0, classes, 6)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(target), label_smoothing=0.1)
    ref.backward()
    grad = x.copy()
    loss, _ = fastloss.cross_entropy(grad, target, label_smoothing=0.1, return_grad=True, out=grad)
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)
