"""The loss registry: one row per public loss.

Tests, benchmarks, the demo job and the docs iterate over :data:`LOSSES`, so a loss that is
registered is tested, benchmarked and documented by that fact. Each row names the loss, its
function, its family, the library whose semantics it follows and that library's function,
and a generator of typical inputs (used by the demo job and the benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastloss import binary, divergence, pairwise, regression, softmax


def _regression_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    return {
        "input": rng.standard_normal(n, dtype=np.float32).astype(dtype, copy=False),
        "target": rng.standard_normal(n, dtype=np.float32).astype(dtype, copy=False),
    }


def _positive_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    return {
        "input": rng.random(n, dtype=np.float32).astype(dtype, copy=False) + dtype(0.01),
        "target": rng.random(n, dtype=np.float32).astype(dtype, copy=False) + dtype(0.01),
    }


def _count_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    return {
        "input": rng.standard_normal(n, dtype=np.float32).astype(dtype, copy=False),
        "target": rng.poisson(2.0, n).astype(dtype),
    }


def _gaussian_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    inputs = _regression_inputs(rng, n, dtype)
    inputs["var"] = rng.random(n, dtype=np.float32).astype(dtype, copy=False) + dtype(0.1)
    return inputs


CLASSES = 1000  # classes of the generated classification inputs


def _logit_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    rows = max(1, n // CLASSES)
    return {
        "input": rng.standard_normal((rows, CLASSES), dtype=np.float32).astype(dtype, copy=False),
        "target": rng.integers(0, CLASSES, rows),
    }


def _log_prob_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    inputs = _logit_inputs(rng, n, dtype)
    x = inputs["input"]
    inputs["input"] = (
        x
        - np.log(np.sum(np.exp(x - x.max(1, keepdims=True)), 1, keepdims=True))
        - (x.max(1, keepdims=True))
    )
    return inputs


def _probability_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    inputs = _logit_inputs(rng, n, dtype)
    x = inputs["input"]
    p = rng.random(x.shape, dtype=np.float32).astype(dtype, copy=False) + dtype(0.01)
    inputs["input"] = p / p.sum(1, keepdims=True)
    inputs["target"] = np.eye(CLASSES, dtype=dtype)[inputs["target"]]
    return inputs


def _sparse_probability_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    inputs = _probability_inputs(rng, n, dtype)
    inputs["target"] = inputs["target"].argmax(1)
    return inputs


EMBEDDING = 128  # values per row of the generated embeddings


def _pair_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    rows = max(1, n // EMBEDDING)
    x1 = rng.standard_normal((rows, EMBEDDING), dtype=np.float32)
    x2 = x1 + rng.standard_normal((rows, EMBEDDING), dtype=np.float32)
    return {
        "input1": x1.astype(dtype, copy=False),
        "input2": x2.astype(dtype, copy=False),
        "target": rng.choice(np.array([-1.0, 1.0], dtype), rows),
    }


def _triplet_inputs(rng: np.random.Generator, n: int, dtype) -> dict:
    rows = max(1, n // EMBEDDING)
    anchor = rng.standard_normal((rows, EMBEDDING), dtype=np.float32)
    return {
        "anchor": anchor.astype(dtype, copy=False),
        "positive": (anchor + 0.5 * rng.standard_normal(anchor.shape, np.float32)).astype(dtype),
        # a negative about as far as the positive: some triplets inside the margin, some not
        "negative": (anchor + 0.55 * rng.standard_normal(anchor.shape, np.float32)).astype(dtype),
    }


def _empty_pairs() -> dict:
    x = np.empty((0, 1), np.float32)
    return {"input1": x, "input2": x, "target": np.empty(0, np.float32)}


def _empty_triplets() -> dict:
    x = np.empty((0, 1), np.float32)
    return {"anchor": x, "positive": x, "negative": x}


def _empty_elements() -> dict:
    return {"input": np.empty(0, np.float32), "target": np.empty(0, np.float32)}


def _empty_focal() -> dict:
    return {"inputs": np.empty(0, np.float32), "targets": np.empty(0, np.float32)}


def _empty_index_rows() -> dict:
    return {"input": np.empty((0, 1), np.float32), "target": np.empty(0, np.int64)}


def _empty_probability_rows() -> dict:
    return {"input": np.empty((0, 1), np.float32), "target": np.empty((0, 1), np.float32)}


def _sqrt(value):
    return type(value)(np.sqrt(value))


@dataclass(frozen=True)
class LossInfo:
    """One registered loss.

    ``data`` names the arguments that are per-element (or per-row) arrays, the ones an
    :class:`~fastloss.Accumulator` takes chunk by chunk; the others are options. ``finish``
    turns the reduced value into the loss (rmse's square root); ``chunk_grad`` says whether a
    chunk's gradient is known before the last chunk; ``empty_inputs`` is the one-shot call's
    input of no elements.
    """

    name: str
    function: Callable
    family: str
    dialect: str  # whose semantics it follows: "torch" or "keras"
    reference: str  # the reference function or class in that library
    make_inputs: Callable[[np.random.Generator, int, type], dict] = field(
        default=_regression_inputs, repr=False
    )
    data: tuple[str, ...] = ("input", "target")
    finish: Callable | None = field(default=None, repr=False)
    chunk_grad: bool = True
    empty_inputs: Callable[[], dict] = field(default=_empty_elements, repr=False)


LOSSES: dict[str, LossInfo] = {
    info.name: info
    for info in [
        LossInfo(
            "mse_loss",
            regression.mse_loss,
            "regression",
            "torch",
            "torch.nn.functional.mse_loss",
            data=("input", "target", "weight"),
        ),
        LossInfo(
            "l1_loss",
            regression.l1_loss,
            "regression",
            "torch",
            "torch.nn.functional.l1_loss",
            data=("input", "target", "weight"),
        ),
        LossInfo(
            "huber_loss",
            regression.huber_loss,
            "regression",
            "torch",
            "torch.nn.functional.huber_loss",
            data=("input", "target", "weight"),
        ),
        LossInfo(
            "smooth_l1_loss",
            regression.smooth_l1_loss,
            "regression",
            "torch",
            "torch.nn.functional.smooth_l1_loss",
        ),
        LossInfo(
            "poisson_nll_loss",
            regression.poisson_nll_loss,
            "regression",
            "torch",
            "torch.nn.functional.poisson_nll_loss",
            _count_inputs,
        ),
        LossInfo(
            "gaussian_nll_loss",
            regression.gaussian_nll_loss,
            "regression",
            "torch",
            "torch.nn.functional.gaussian_nll_loss",
            _gaussian_inputs,
            data=("input", "target", "var"),
        ),
        LossInfo(
            "rmse_loss",
            regression.rmse_loss,
            "regression",
            "keras",
            "keras.metrics.RootMeanSquaredError",
            finish=_sqrt,
            chunk_grad=False,
        ),
        LossInfo(
            "log_cosh_loss", regression.log_cosh_loss, "regression", "keras", "keras.losses.LogCosh"
        ),
        LossInfo(
            "msle_loss",
            regression.msle_loss,
            "regression",
            "keras",
            "keras.losses.MeanSquaredLogarithmicError",
            _positive_inputs,
        ),
        LossInfo(
            "mape_loss",
            regression.mape_loss,
            "regression",
            "keras",
            "keras.losses.MeanAbsolutePercentageError",
            _positive_inputs,
        ),
        LossInfo(
            "binary_cross_entropy",
            binary.binary_cross_entropy,
            "classification",
            "torch",
            "torch.nn.functional.binary_cross_entropy",
            binary.probability_inputs,
            data=("input", "target", "weight"),
        ),
        LossInfo(
            "binary_cross_entropy_with_logits",
            binary.binary_cross_entropy_with_logits,
            "classification",
            "torch",
            "torch.nn.functional.binary_cross_entropy_with_logits",
            binary.logit_inputs,
            data=("input", "target", "weight", "pos_weight"),
        ),
        LossInfo(
            "sigmoid_focal_loss",
            binary.sigmoid_focal_loss,
            "classification",
            "torch",
            "torchvision.ops.sigmoid_focal_loss",
            binary.focal_inputs,
            data=("inputs", "targets"),
            empty_inputs=_empty_focal,
        ),
        LossInfo(
            "binary_crossentropy",
            binary.binary_crossentropy,
            "classification",
            "keras",
            "keras.losses.binary_crossentropy",
            binary.probability_inputs,
        ),
        LossInfo(
            "binary_focal_crossentropy",
            binary.binary_focal_crossentropy,
            "classification",
            "keras",
            "keras.losses.binary_focal_crossentropy",
            binary.probability_inputs,
        ),
        LossInfo(
            "kl_div",
            divergence.kl_div,
            "classification",
            "torch",
            "torch.nn.functional.kl_div",
            divergence.log_probability_inputs,
        ),
        LossInfo(
            "cross_entropy",
            softmax.cross_entropy,
            "classification",
            "torch",
            "torch.nn.functional.cross_entropy",
            _logit_inputs,
            empty_inputs=_empty_index_rows,
        ),
        LossInfo(
            "nll_loss",
            softmax.nll_loss,
            "classification",
            "torch",
            "torch.nn.functional.nll_loss",
            _log_prob_inputs,
            empty_inputs=_empty_index_rows,
        ),
        LossInfo(
            "focal_loss",
            softmax.focal_loss,
            "classification",
            "torch",
            "alpha * (1 - p_t) ** gamma * torch.nn.functional.cross_entropy",
            _logit_inputs,
            empty_inputs=_empty_index_rows,
        ),
        LossInfo(
            "categorical_crossentropy",
            softmax.categorical_crossentropy,
            "classification",
            "keras",
            "keras.losses.CategoricalCrossentropy",
            _probability_inputs,
            empty_inputs=_empty_probability_rows,
        ),
        LossInfo(
            "sparse_categorical_crossentropy",
            softmax.sparse_categorical_crossentropy,
            "classification",
            "keras",
            "keras.losses.SparseCategoricalCrossentropy",
            _sparse_probability_inputs,
            empty_inputs=_empty_index_rows,
        ),
        LossInfo(
            "categorical_focal_crossentropy",
            softmax.categorical_focal_crossentropy,
            "classification",
            "keras",
            "keras.losses.CategoricalFocalCrossentropy",
            _probability_inputs,
            empty_inputs=_empty_probability_rows,
        ),
        LossInfo(
            "cosine_embedding_loss",
            pairwise.cosine_embedding_loss,
            "embedding",
            "torch",
            "torch.nn.functional.cosine_embedding_loss",
            _pair_inputs,
            data=("input1", "input2", "target"),
            empty_inputs=_empty_pairs,
        ),
        LossInfo(
            "triplet_margin_loss",
            pairwise.triplet_margin_loss,
            "embedding",
            "torch",
            "torch.nn.functional.triplet_margin_loss",
            _triplet_inputs,
            data=("anchor", "positive", "negative"),
            empty_inputs=_empty_triplets,
        ),
    ]
}
