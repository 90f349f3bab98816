"""The loss registry: one row per public loss.

Tests, benchmarks, the demo job and the docs iterate over :data:`LOSSES`, so a loss that is
registered is tested, benchmarked and documented by that fact. Each row names the loss, its
function, its family, the library whose semantics it follows and that library's function, a
generator of typical inputs (the demo job, the benchmarks, the Accumulator and contract tests)
and, for the elementwise losses, the test suite's part: the domain of its test inputs at any
shape (``sample``), the option sets it is tested with (``variants``) and the arguments that have
a gradient. The test suite's reference table (``tests/conftest.py``), the asv cases
(``asv_bench/benchmarks/common.py``), the default job (``python -m fastloss``) and the index
of ``docs/losses.md`` are read from here.

An elementwise loss can also be declared here instead of written by hand: a row made by
:func:`declared` holds an :class:`~fastloss.declared.Elementwise` (its kernel spec, options and
docstring) and its public function is generated from it (:mod:`fastloss.declared`) and exported
by ``fastloss/__init__.py``. ``hinge_embedding_loss`` and ``soft_margin_loss`` are declared so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastloss import binary, divergence, pairwise, regression, softmax
from fastloss.declared import Elementwise, Option, build


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


def _smooth_l1_kernel(params: tuple, flags: tuple) -> tuple:
    """``beta = 0`` is exactly ``l1_loss``, as in torch (its gradient's 0 at ``d = 0``)."""
    if params[0] == 0.0:
        return ("regression", "L1"), (), flags
    return ("regression", "SMOOTH_L1"), params, flags


# Domains of typical values: how each data array of an elementwise loss is drawn (float32
# draws, cast to the dtype asked for, as the generators above).
DOMAINS = {
    "real": lambda rng, n: rng.standard_normal(n, dtype=np.float32),
    "positive": lambda rng, n: rng.random(n, dtype=np.float32) * np.float32(2.5) + 0.5,
    "count": lambda rng, n: np.floor(rng.random(n, dtype=np.float32) * np.float32(5.0)),
    "sign": lambda rng, n: np.where(rng.random(n, dtype=np.float32) < 0.5, 1, -1),
}


@dataclass(frozen=True)
class DomainInputs:
    """``make_inputs`` from the data arrays' names and domains."""

    data: tuple[str, ...]
    domains: tuple[str, ...]

    def __call__(self, rng: np.random.Generator, n: int, dtype) -> dict:
        return {
            name: DOMAINS[domain](rng, n).astype(dtype, copy=False)
            for name, domain in zip(self.data, self.domains, strict=True)
        }


# --- the test suite's inputs: float64 values at any shape --------------------------------------
# A draw is (rng, shape, options) -> float64 array; options are the variant's keyword
# arguments (poisson_nll_loss's input is a log-rate or a rate by log_input).


def _normal(rng, shape, options):
    return rng.standard_normal(shape)


def _scaled_normal(scale: float):
    def draw(rng, shape, options):
        return scale * rng.standard_normal(shape)

    return draw


def _uniform(low: float, high: float):
    def draw(rng, shape, options):
        return rng.uniform(low, high, shape)

    return draw


def _counts(rng, shape, options):
    return rng.poisson(2.0, shape).astype(np.float64)


def _log_rates_or_rates(rng, shape, options):
    if options.get("log_input", True):
        return rng.standard_normal(shape)
    return rng.uniform(0.05, 3.0, shape)


def _signs_and_others(rng, shape, options):
    """Targets 1 and -1, one in eight another value (torch defines the margin losses there
    too: a hinge embedding target that is neither takes both terms)."""
    signs = np.where(rng.random(shape) < 0.5, 1.0, -1.0)
    others = rng.choice(np.array([0.0, 0.5, 2.0, -3.0]), shape)
    return np.where(rng.random(shape) < 0.125, others, signs)


@dataclass(frozen=True)
class Sample:
    """The domain of a loss's test inputs: ``input`` drawn first, then ``target``."""

    input: Callable = _normal
    target: Callable = _normal

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...], options: dict) -> dict:
        return {
            "input": self.input(rng, shape, options),
            "target": self.target(rng, shape, options),
        }


def var_shape(shape: tuple[int, ...], mode: str) -> tuple[int, ...] | None:
    """The shape of ``var`` for gaussian_nll_loss's layout ``mode`` on an input of ``shape``
    (torch's rules), or ``None`` where that layout does not exist."""
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
class Variant:
    """One set of keyword arguments the tests run a loss with.

    ``kwargs`` go to fastloss and to the reference alike; ``weight`` asks for a per-element
    weight array; ``var`` is gaussian_nll_loss's variance layout (``"same"``, ``"short"``,
    ``"dim1"``, or ``"float"`` for a Python float).
    """

    id: str
    kwargs: dict = field(default_factory=dict)
    weight: bool = False
    var: str | None = None

    def applies(self, shape: tuple[int, ...]) -> bool:
        return self.var in (None, "float") or var_shape(shape, self.var) is not None


DEFAULT = (Variant("default"),)


@dataclass(frozen=True)
class LossInfo:
    """One registered loss.

    ``data`` names the arguments that are per-element (or per-row) arrays, the ones an
    :class:`~fastloss.Accumulator` takes chunk by chunk; the others are options. ``finish``
    turns the reduced value into the loss (rmse's square root); ``chunk_grad`` says whether a
    chunk's gradient is known before the last chunk; ``empty_inputs`` is the one-shot call's
    input of no elements. ``job`` holds the options of the default job and the benchmarks
    where the loss's own defaults do not reduce to one number as its reference does.
    ``domains`` names the domain of each data array's typical values (one of
    :data:`DOMAINS`): the benchmarks draw their shared arrays by it, and a declared row
    without ``make_inputs`` draws its typical inputs from it.

    The test suite's part (elementwise losses): ``sample`` draws the test inputs at a shape,
    ``variants`` are the option sets tested against ``reference`` (none: the loss has a suite
    of its own), ``grads`` the arguments whose gradients ``return_grad=True`` returns.
    ``declaration`` is set for a loss whose function was generated from the row.
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
    job: dict = field(default_factory=dict)
    domains: tuple[str, ...] = ()
    sample: Callable | None = field(default=None, repr=False)
    variants: tuple[Variant, ...] = ()
    grads: tuple[str, ...] = ("input",)
    declaration: Elementwise | None = field(default=None, repr=False)


def declared(
    name: str, family: str, dialect: str, reference: str, declaration: Elementwise, **info
) -> LossInfo:
    """The row of a loss whose public function is generated from ``declaration``; its typical
    inputs are drawn from its ``domains`` unless ``make_inputs`` is given."""
    if "make_inputs" not in info:
        data = info.get("data", ("input", "target"))[: len(info["domains"])]  # not weight
        info["make_inputs"] = DomainInputs(data, info["domains"])
    return LossInfo(
        name,
        build(name, reference, declaration),
        family,
        dialect,
        reference,
        declaration=declaration,
        **info,
    )


LOSSES: dict[str, LossInfo] = {
    info.name: info
    for info in [
        declared(
            "mse_loss",
            "regression",
            "torch",
            "torch.nn.functional.mse_loss",
            Elementwise(
                kernel=("regression", "MSE"),
                warn_shape=True,
                weight="sum",
                title="Mean squared error",
                formula=r"""
                    \ell_i = w_i (x_i - y_i)^2, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = 2 w_i (x_i - y_i)
                """,
                notes=r"""
                    ``reduction="mean"`` divides the sum by the element count, or by
                    :math:`\sum_i w_i` when ``weight`` is given (torch's weighted mean).
                    ``target`` broadcasts against ``input`` with torch's warning when the sizes
                    differ; ``weight`` broadcasts as ``input`` does, as in torch, and the
                    weighted mean divides by the sum of ``weight``'s own elements (an input of
                    shape ``(4,)`` against a target of shape ``(3, 4)`` counts each weight
                    once, not 3 times). The gradient has ``input``'s shape (summed over the
                    broadcast axes). The second derivative is :math:`2 w_i` (twice
                    scikit-learn's ``HalfSquaredError``), times the reduction's scale.
                """,
                example=(
                    "float(fastloss.mse_loss([1.0, 2.0, 3.0], [1.5, 2.0, 2.0]))",
                    "0.4166666666666667",
                ),
            ),
            data=("input", "target", "weight"),
            domains=("real", "real"),
            sample=Sample(),
            variants=(Variant("default"), Variant("weight", weight=True)),
        ),
        declared(
            "l1_loss",
            "regression",
            "torch",
            "torch.nn.functional.l1_loss",
            Elementwise(
                kernel=("regression", "L1"),
                warn_shape=True,
                weight="sum",
                title="Mean absolute error",
                formula=r"""
                    \ell_i = w_i |x_i - y_i|, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = w_i \operatorname{sign}(x_i - y_i)
                """,
                notes=r"""
                    with torch's subgradient 0 where :math:`x_i = y_i`. The weighted mean
                    divides by :math:`\sum_i w_i`, as torch does; shapes as
                    :func:`mse_loss`. The second derivative is :math:`w_i` everywhere,
                    scikit-learn's ``AbsoluteError`` convention (the exact one is 0 almost
                    everywhere).
                """,
                example=("float(fastloss.l1_loss([1.0, 2.0, 3.0], [1.5, 2.0, 2.0]))", "0.5"),
            ),
            data=("input", "target", "weight"),
            domains=("real", "real"),
            sample=Sample(),
            variants=(Variant("default"), Variant("weight", weight=True)),
        ),
        declared(
            "huber_loss",
            "regression",
            "torch",
            "torch.nn.functional.huber_loss",
            Elementwise(
                kernel=("regression", "HUBER"),
                legacy=False,
                warn_shape=True,
                weight="count",
                order=("reduction", "delta", "weight"),
                options=(
                    Option(
                        "delta",
                        1.0,
                        r"The threshold :math:`\delta` (> 0).",
                        limits={"low": 0.0, "strict": True, "finite": False},
                    ),
                ),  # fmt: skip
                title="Huber loss",
                preamble=r"With :math:`d_i = x_i - y_i`:",
                formula=r"""
                    \ell_i = w_i \begin{cases} \tfrac12 d_i^2 & |d_i| < \delta \\
                             \delta (|d_i| - \tfrac12 \delta) & \text{otherwise} \end{cases},
                    \qquad
                    \frac{\partial \ell_i}{\partial x_i} = w_i
                    \operatorname{clamp}(d_i, -\delta, \delta)
                """,
                notes=r"""
                    ``delta`` must be > 0 (torch refuses other values). With ``weight``, the
                    mean divides the weighted sum by the element count of the broadcast shape
                    (torch's weighted Huber mean, unlike its weighted MSE). The second
                    derivative is :math:`w_i` where :math:`|d_i| \le \delta` and 0 outside
                    (scikit-learn's ``HuberLoss``).
                """,
                example=("float(fastloss.huber_loss([0.0, 3.0], [0.5, 0.0], delta=1.0))", "1.3125"),
            ),
            data=("input", "target", "weight"),
            domains=("real", "real"),
            sample=Sample(_scaled_normal(2.0)),
            variants=(
                Variant("default"),
                Variant("delta0.5", {"delta": 0.5}),
                Variant("delta2.5", {"delta": 2.5}),
                Variant("weight-delta0.75", {"delta": 0.75}, weight=True),
            ),
        ),
        declared(
            "smooth_l1_loss",
            "regression",
            "torch",
            "torch.nn.functional.smooth_l1_loss",
            Elementwise(
                kernel=("regression", "SMOOTH_L1"),
                warn_shape=True,
                order=("size_average", "reduce", "reduction", "beta"),
                kernel_for=_smooth_l1_kernel,
                options=(
                    Option(
                        "beta",
                        1.0,
                        r"The threshold :math:`\beta` (>= 0).",
                        limits={"low": 0.0, "finite": False},
                    ),
                ),
                title="Smooth L1 loss",
                preamble=r"With :math:`d_i = x_i - y_i`:",
                formula=r"""
                    \ell_i = \begin{cases} \tfrac12 d_i^2 / \beta & |d_i| < \beta \\
                             |d_i| - \tfrac12 \beta & \text{otherwise} \end{cases}, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = \operatorname{clamp}(d_i / \beta,
                    -1, 1)
                """,
                notes=r"""
                    ``beta = 0`` is exactly :func:`l1_loss`, as in torch; a negative ``beta``
                    raises. The second derivative is :math:`1/\beta` where
                    :math:`|d_i| \le \beta`, 0 outside (Huber's convention; 1 everywhere for
                    ``beta = 0``, as :func:`l1_loss`).
                """,
                example=("float(fastloss.smooth_l1_loss([0.0, 3.0], [0.5, 0.0]))", "1.3125"),
            ),
            domains=("real", "real"),
            sample=Sample(_scaled_normal(2.0)),
            variants=(
                Variant("default"),
                Variant("beta0.5", {"beta": 0.5}),
                Variant("beta2", {"beta": 2.0}),
                Variant("beta0", {"beta": 0.0}),
            ),
        ),
        declared(
            "poisson_nll_loss",
            "regression",
            "torch",
            "torch.nn.functional.poisson_nll_loss",
            Elementwise(
                kernel=("regression", "POISSON_NLL"),
                order=("log_input", "full", "size_average", "eps", "reduce", "reduction"),
                options=(
                    Option(
                        "log_input",
                        True,
                        "The input is the log-rate (else the rate).",
                        kind="bool",
                    ),
                    Option("full", False, "Add Stirling's term where the target > 1.", kind="bool"),
                    Option(
                        "eps",
                        1e-8,
                        r"The :math:`\varepsilon` of the rate form.",
                        limits={"finite": False},
                    ),
                ),  # fmt: skip
                title="Poisson negative log likelihood",
                formula=r"""
                    \ell_i = \begin{cases} e^{x_i} - y_i x_i & \text{log\_input} \\
                             x_i - y_i \log(x_i + \varepsilon) & \text{otherwise} \end{cases}
                             \; [+\, y_i \log y_i - y_i + \tfrac12 \log(2 \pi y_i)
                             \text{ if full and } y_i > 1]

                    \frac{\partial \ell_i}{\partial x_i} = \begin{cases} e^{x_i} - y_i &
                    \text{log\_input} \\ 1 - y_i / (x_i + \varepsilon) & \text{otherwise}
                    \end{cases}
                """,
                notes=r"""
                    The Stirling term of ``full`` does not depend on the input. The second
                    derivative is :math:`e^{x_i}` with ``log_input`` (scikit-learn's
                    ``HalfPoissonLoss``), else :math:`y_i / (x_i + \varepsilon)^2`.
                """,
                example=(
                    "round(float(fastloss.poisson_nll_loss([0.0, 1.0], [1.0, 2.0])), 6)",
                    "0.859141",
                ),
            ),
            make_inputs=_count_inputs,
            domains=("real", "count"),
            sample=Sample(_log_rates_or_rates, _counts),
            variants=(
                Variant("default"),
                Variant("full", {"full": True}),
                Variant("rate", {"log_input": False}),
                Variant("rate-full", {"log_input": False, "full": True}),
                Variant("rate-eps", {"log_input": False, "eps": 1e-3}),
            ),
        ),
        LossInfo(
            "gaussian_nll_loss",
            regression.gaussian_nll_loss,
            "regression",
            "torch",
            "torch.nn.functional.gaussian_nll_loss",
            _gaussian_inputs,
            data=("input", "target", "var"),
            domains=("real", "real", "positive"),
            sample=Sample(),
            variants=(
                Variant("var", var="same"),
                Variant("var-short", var="short"),
                Variant("var-dim1", var="dim1"),
                Variant("var-float", var="float"),
                Variant("full", {"full": True}, var="same"),
                Variant("eps", {"eps": 0.05}, var="same"),
                Variant("full-dim1", {"full": True}, var="dim1"),
            ),
            grads=("input", "var"),
        ),
        LossInfo(
            "rmse_loss",
            regression.rmse_loss,
            "regression",
            "keras",
            "keras.metrics.RootMeanSquaredError",
            finish=_sqrt,
            chunk_grad=False,
            domains=("real", "real"),
            sample=Sample(),
            variants=DEFAULT,
        ),
        declared(
            "log_cosh_loss",
            "regression",
            "keras",
            "keras.losses.LogCosh",
            Elementwise(
                kernel=("regression", "LOG_COSH"),
                keyword_reduction=True,
                legacy=False,
                title="Logarithm of the hyperbolic cosine of the error",
                formula=r"""
                    \ell_i = \log\cosh(x_i - y_i) = |d_i| + \log(1 + e^{-2|d_i|}) - \log 2, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = \tanh(x_i - y_i)
                """,
                notes=r"""
                    computed in that overflow-free form, as :math:`|d_i| + \log f_i`, :math:`f_i =
                    (1 + e^{-2|d_i|})/2`; ``"mean"`` and ``"sum"`` take one logarithm of the product
                    of the :math:`f_i` per 1024 elements. Keras averages over the last axis then the
                    batch, which for ``reduction="mean"`` is the mean over all elements. Accuracy is
                    absolute, as with Keras's own formula: about an ulp of 1/2 (3e-8 in float32), so
                    losses near 0 (:math:`d^2/2` for small :math:`d`) lose their relative accuracy.
                    The second derivative is :math:`1 - \tanh^2(d_i)`, computed without
                    cancellation.

                """,
                example=(
                    "round(float(fastloss.log_cosh_loss([1.0, 1.0, 0.0], [0.9, 0.75, 0.7])), 6)",
                    "0.087731",
                ),
            ),
            domains=("real", "real"),
            sample=Sample(_scaled_normal(3.0)),
            variants=DEFAULT,
        ),
        declared(
            "msle_loss",
            "regression",
            "keras",
            "keras.losses.MeanSquaredLogarithmicError",
            Elementwise(
                kernel=("regression", "MSLE"),
                keyword_reduction=True,
                legacy=False,
                constants=(regression.KERAS_EPSILON,),
                title="Mean squared logarithmic error",
                preamble=r"""
                    With :math:`\epsilon = 10^{-7}` (Keras's ``epsilon()``) and
                    :math:`r_i = \log(\max(x_i, \epsilon) + 1) - \log(\max(y_i, \epsilon) + 1)`:
                """,
                formula=r"""
                    \ell_i = r_i^2, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = \frac{2 r_i}{\max(x_i, \epsilon) + 1}
                    \,[x_i > \epsilon]
                """,
                notes=r"""
                    (half that at :math:`x_i = \epsilon`, where Keras's ``maximum`` splits the
                    gradient). The second derivative is :math:`2 (1 - r_i) / (\max(x_i, \epsilon) +
                    1)^2` with the same factor (0 below :math:`\epsilon`, half at it).

                """,
                example=("round(float(fastloss.msle_loss([1.0, 2.0], [1.0, 3.0])), 6)", "0.04138"),
            ),
            make_inputs=_positive_inputs,
            # mostly positive, some negative: Keras clamps y_pred at epsilon (gradient 0 there)
            domains=("positive", "count"),
            sample=Sample(_uniform(-0.5, 3.0), _uniform(0.0, 5.0)),
            variants=DEFAULT,
        ),
        declared(
            "mape_loss",
            "regression",
            "keras",
            "keras.losses.MeanAbsolutePercentageError",
            Elementwise(
                kernel=("regression", "MAPE"),
                keyword_reduction=True,
                legacy=False,
                constants=(regression.KERAS_EPSILON,),
                title="Mean absolute percentage error",
                preamble=r"""
                    With :math:`m_i = \max(|y_i|, \epsilon)`, :math:`\epsilon = 10^{-7}`:
                """,
                formula=r"""
                    \ell_i = 100 \left|\frac{y_i - x_i}{m_i}\right|, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = \frac{100}{m_i}
                    \operatorname{sign}(x_i - y_i)
                """,
                notes=r"""
                    A zero target meets :math:`\epsilon`, so its percentage is huge, as in Keras.
                    The second derivative is :math:`100 / m_i` everywhere, :math:`x_i = y_i`
                    included: scikit-learn's ``AbsoluteError`` convention (1, where the exact value
                    is 0 almost everywhere) scaled by the slope of this absolute error.

                """,
                example=("float(fastloss.mape_loss([1.0, 3.0], [2.0, 2.0]))", "50.0"),
            ),
            make_inputs=_positive_inputs,
            domains=("real", "positive"),
            sample=Sample(),
            variants=DEFAULT,
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
            job={"reduction": "mean"},  # torchvision's default is "none"
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
            job={"reduction": "batchmean"},  # torch warns on "mean"
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
        declared(
            "hinge_embedding_loss",
            "margin",
            "torch",
            "torch.nn.functional.hinge_embedding_loss",
            Elementwise(
                kernel=("margin", "HINGE_EMBEDDING"),
                title="Hinge embedding loss",
                formula=r"""
                    \ell_i = \begin{cases} x_i & y_i = 1 \\
                             \max(0, \Delta - x_i) & y_i = -1 \end{cases}, \qquad
                    \frac{\partial \ell_i}{\partial x_i} = \begin{cases} 1 & y_i = 1 \\
                             -[x_i \le \Delta] & y_i = -1 \end{cases}
                """,
                notes=r"""
                    :math:`\Delta` is ``margin``; ``x`` is typically a distance between two
                    inputs, ``y`` says whether they are similar (1) or not (-1). As in torch,
                    a target that is neither 1 nor -1 (NaN included) takes both terms,
                    :math:`x_i + \max(0, \Delta - x_i)`, and ``target`` broadcasts against
                    ``input`` without a warning. The gradient at the kink
                    :math:`x_i = \Delta` is torch's ``clamp_min`` one, -1, and 0 where
                    :math:`\Delta - x_i` is NaN. The loss is piecewise linear; its second
                    derivative is 1 everywhere, scikit-learn's ``AbsoluteError`` convention
                    (the exact one is 0 almost everywhere).
                """,
                options=(Option("margin", 1.0, r"The margin :math:`\Delta` (any real)."),),
                example=(
                    "float(fastloss.hinge_embedding_loss([0.8, -0.9, 0.7, -0.6], "
                    "[1.0, -1.0, 1.0, -1.0]))",
                    "1.25",
                ),
            ),
            domains=("real", "sign"),
            sample=Sample(_scaled_normal(2.0), _signs_and_others),
            variants=(
                Variant("default"),
                Variant("margin0.5", {"margin": 0.5}),
                Variant("margin2", {"margin": 2.0}),
                Variant("margin0", {"margin": 0.0}),
                Variant("margin-neg", {"margin": -0.75}),
            ),
        ),
        declared(
            "soft_margin_loss",
            "margin",
            "torch",
            "torch.nn.functional.soft_margin_loss",
            Elementwise(
                kernel=("margin", "SOFT_MARGIN"),
                target_fits_input=True,
                title="Soft margin loss (two-class logistic loss on targets 1 and -1)",
                formula=r"""
                    \ell_i = \log(1 + e^{-y_i x_i}), \qquad
                    \frac{\partial \ell_i}{\partial x_i} = -y_i \sigma(-y_i x_i)
                """,
                notes=r"""
                    :math:`\sigma` is the sigmoid. Computed as
                    :math:`\log(1 + e^{-|z|}) + \max(-z, 0)`, :math:`z = y_i x_i`, which is
                    finite for every finite input: where torch's ``log1p(exp(-z))`` overflows
                    (:math:`-z > 88.7` in float32, 709.8 in float64; torch then gives inf and
                    a NaN gradient) fastloss gives :math:`-z` and :math:`-y_i`. Any real
                    target is accepted, as in torch; it broadcasts to the shape of
                    ``input`` without a warning, and a target of a larger broadcast shape
                    raises ``ValueError`` (torch refuses it too). The second derivative is
                    :math:`y_i^2 \sigma(z) \sigma(-z)` (scikit-learn's ``HalfBinomialLoss``
                    in :math:`z`), without cancellation for large :math:`|z|`.
                """,
                example=(
                    "round(float(fastloss.soft_margin_loss([2.0, -1.0], [1.0, 1.0])), 6)",
                    "0.720095",
                ),
            ),
            domains=("real", "sign"),
            sample=Sample(_scaled_normal(2.0), _signs_and_others),
            variants=DEFAULT,
        ),
    ]
}
