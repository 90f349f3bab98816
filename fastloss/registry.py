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

from fastloss import regression


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


@dataclass(frozen=True)
class LossInfo:
    """One registered loss."""

    name: str
    function: Callable
    family: str
    dialect: str  # whose semantics it follows: "torch" or "keras"
    reference: str  # the reference function or class in that library
    make_inputs: Callable[[np.random.Generator, int, type], dict] = field(
        default=_regression_inputs, repr=False
    )


LOSSES: dict[str, LossInfo] = {
    info.name: info
    for info in [
        LossInfo(
            "mse_loss", regression.mse_loss, "regression", "torch", "torch.nn.functional.mse_loss"
        ),
        LossInfo(
            "l1_loss", regression.l1_loss, "regression", "torch", "torch.nn.functional.l1_loss"
        ),
        LossInfo(
            "huber_loss",
            regression.huber_loss,
            "regression",
            "torch",
            "torch.nn.functional.huber_loss",
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
        ),
        LossInfo(
            "rmse_loss",
            regression.rmse_loss,
            "regression",
            "keras",
            "keras.metrics.RootMeanSquaredError",
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
    ]
}
