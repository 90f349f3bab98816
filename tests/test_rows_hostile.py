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
