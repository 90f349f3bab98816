"""The registry drives the test table, the benchmarks, the default job and the exports.

A registered loss must reach each of them without another edit: the test suite's reference
table (``conftest.TABLE``), the asv cases (``asv_bench/benchmarks/common.py``), the default
job's torch counterparts (``fastloss._demo``) and, for a declared loss, ``fastloss``'s
namespace. The docs' index is checked in ``test_docs.py``.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import TABLE, assert_close, torch

import fastloss
from fastloss import _demo
from fastloss.declared import Elementwise, Option, build
from fastloss.registry import DOMAINS, LOSSES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asv_bench"))
from benchmarks import common  # noqa: E402


def test_every_elementwise_row_with_variants_is_in_the_test_table():
    rows = {name for name, info in LOSSES.items() if info.variants}
    assert rows == set(TABLE)
    for name in rows:
        info = LOSSES[name]
        assert info.sample is not None, name
        assert set(info.grads) <= set(info.data), name
        assert TABLE[name].options == info.variants


def test_declared_losses_are_exported_with_their_row():
    declared = [name for name, info in LOSSES.items() if info.declaration is not None]
    assert {"hinge_embedding_loss", "soft_margin_loss"} <= set(declared)
    for name in declared:
        assert getattr(fastloss, name) is LOSSES[name].function
        assert LOSSES[name].function.__module__ == "fastloss.declared"
        assert LOSSES[name].domains, f"{name}: a declared row names its domains"


def test_benchmarks_are_the_rows_with_domains():
    assert common.LOSS_NAMES == tuple(n for n, info in LOSSES.items() if info.domains)
    for loss in common.LOSSES:
        info = LOSSES[loss.name]
        assert len(loss.arrays) == len(info.domains) and set(info.domains) <= set(DOMAINS)
        assert loss.torch is not None, f"{loss.name}: no torch baseline"


@pytest.mark.parametrize("name", common.LOSS_NAMES)
def test_benchmark_baselines_compute_the_loss(name):
    """Each case's fastloss call, torch forward+backward and NumPy baseline agree on the base
    arrays (float64), so the benchmarks compare the same computation."""
    loss = common.BY_NAME[name]
    arrays = common.make_base_arrays(1000, "float64", seed=3)
    assert set(np.unique(arrays["s"])) == {-1.0, 1.0}
    fast_value, fast_grad = common.prepare(loss, "fastloss", "forward_backward", arrays).run()
    fast_grads = fast_grad if isinstance(fast_grad, tuple) else (fast_grad,)
    runner = common.prepare(loss, "torch", "forward_backward", arrays)
    value = runner.run_reset()
    assert_close(fast_value, value.detach().numpy(), rtol=1e-10, what="loss")
    for got, leaf in zip(fast_grads, runner.leaves, strict=True):
        assert_close(got, leaf.grad.numpy(), rtol=1e-10, atol=1e-15, what="grad")
    if loss.numpy_forward_backward is not None:
        want, grad = common.prepare(loss, "numpy", "forward_backward", arrays).run()
        assert_close(fast_value, want, rtol=1e-10, what="numpy loss")
        assert_close(fast_grads[0], grad, rtol=1e-10, atol=1e-15, what="numpy grad")


@pytest.mark.parametrize("name", list(LOSSES))
def test_default_job_counterparts(name):
    """The default job's torch counterpart, where there is one, gives fastloss's value on the
    row's typical inputs with the row's job options."""
    info = LOSSES[name]
    function = _demo.torch_function(name)
    keras_only = info.dialect == "keras" and name not in _demo.EXPRESSIONS
    assert (function is None) == keras_only, name
    if function is None:
        return
    inputs = info.make_inputs(np.random.default_rng(0), 5000, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = function(*(torch().from_numpy(v) for v in inputs.values()))
        got = info.function(**inputs, **info.job)
    assert_close(got, want.numpy(), rtol=1e-9, what=name)
    assert _demo.OPTIONS.get(name, {}) == info.job


@pytest.fixture
def _no_leftover():
    """``build`` gives a function its home in fastloss.declared: take the test's away after."""
    yield
    for name in ("declared_for_test", "bad"):
        vars(sys.modules["fastloss.declared"]).pop(name, None)


def test_a_declared_function_is_a_real_function(_no_leftover):
    """What a row declares becomes the signature, the docstring and the kernel call."""
    declaration = Elementwise(
        kernel=("regression", "HUBER"),
        title="A test loss",
        formula=r"\ell_i = h_\delta(x_i - y_i), \qquad \frac{\partial \ell_i}{\partial x_i} = c",
        notes="Notes.",
        example=("1", "1"),
        options=(Option("delta", 1.0, "The threshold.", limits={"low": 0.0, "strict": True}),),
        legacy=False,
    )
    f = build("declared_for_test", "a test", declaration)
    assert str(inspect.signature(f)) == (
        "(input: 'ArrayLike', target: 'ArrayLike', delta: 'float' = 1.0, "
        "reduction: 'str' = 'mean', *, return_grad: 'bool' = False, "
        "return_hess: 'bool' = False, out: 'np.ndarray | None' = None)"
    )
    assert f.__doc__.startswith("A test loss, as ``a test``.") and "delta : float" in f.__doc__
    x, t = np.array([0.0, 3.0]), np.array([0.5, 0.0])
    np.testing.assert_array_equal(
        f(x, t, 0.5, "none", return_grad=True)[1],
        fastloss.huber_loss(x, t, delta=0.5, reduction="none", return_grad=True)[1],
    )
    with pytest.raises(ValueError, match="^delta: "):
        f(x, t, delta=0.0)
    with pytest.raises(TypeError):
        f(x, t, 0.5, "none", True)  # return_grad is keyword-only
    with pytest.raises(ValueError, match="reserved"):
        build("bad", "a test", Elementwise(("regression", "MSE"), "t", "f", "n", ("1", "1"),
                                           options=(Option("out", 1.0, "o"),)))  # fmt: skip


@pytest.mark.parametrize("name", [n for n, info in LOSSES.items() if info.declaration is not None])
def test_a_declared_docstring_lists_the_parameters_in_signature_order(name):
    function = LOSSES[name].function
    doc = function.__doc__.split("Parameters\n----------\n")[1].split("Returns\n")[0]
    listed = [line.split(" : ")[0].split(",")[0] for line in doc.splitlines() if " : " in line]
    names = [p for p in inspect.signature(function).parameters if p not in ("target", "reduce")]
    assert listed == names, name


def test_torch_deprecated_elementwise_mean_is_mean():
    x, t = np.array([0.0, 3.0]), np.array([0.5, 0.0])
    with pytest.warns(UserWarning, match="elementwise_mean") as record:
        got = fastloss.mse_loss(x, t, reduction="elementwise_mean")
    assert record[0].filename == __file__
    assert got == fastloss.mse_loss(x, t)


def test_poisson_eps_may_be_infinite_as_in_torch():
    x, t = np.array([0.5, 2.0]), np.array([1.0, 3.0])
    for log_input in (True, False):
        got = fastloss.poisson_nll_loss(x, t, log_input=log_input, eps=np.inf)
        want = torch().nn.functional.poisson_nll_loss(
            torch().tensor(x), torch().tensor(t), log_input=log_input, eps=float("inf")
        )
        assert got == want.item()
