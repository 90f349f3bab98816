"""Regression tests of reported defects, each against the real library where there is one.

One test (or one parametrised family) per defect: class indices beyond int64, torch's
broadcasting of ``weight``, errors that name their argument for every scalar option of every
registered loss, bfloat16, the ``out=`` message, the source tree as an import root; then checks
of defects fixed earlier (saturated focal gradients, bits with and without ``out=``).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import torch
from test_binary import _torchvision_sigmoid_focal_loss

import fastloss
from fastloss.registry import LOSSES

ROOT = Path(__file__).resolve().parents[1]
FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")


def _inputs(info, n: int = 8, dtype=np.float32) -> dict:
    return info.make_inputs(np.random.default_rng(0), n, dtype)


# --- 1. class indices that do not fit int64 ----------------------------------------------------

INDEX_LOSSES = [
    name
    for name, info in LOSSES.items()
    if np.asarray(_inputs(info).get("target", 0.0)).dtype.kind in "iu"
]


def test_index_losses_found():
    assert set(INDEX_LOSSES) >= {"cross_entropy", "nll_loss", "focal_loss"}
    assert "sparse_categorical_crossentropy" in INDEX_LOSSES


@pytest.mark.parametrize("value", [2**64 - 100, 2**63, 2**64 - 1])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_uint64_index_beyond_int64_raises(name, value):
    """2**64 - 100 wrapped to -100 (the default ignore_index) and was silently skipped."""
    x = np.zeros((2, 3), np.float32)
    if name == "sparse_categorical_crossentropy":
        x = np.full((2, 3), 1 / 3, np.float32)
    target = np.array([1, value], np.uint64)
    with pytest.raises(IndexError, match=f"^target: class index {value} ") as info:
        LOSSES[name].function(x, target)
    assert "(1,)" in str(info.value)  # its position


@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_uint64_indices_that_fit_still_work(name):
    x = np.random.default_rng(1).random((3, 4)).astype(np.float32)
    target = np.array([3, 0, 2])
    f = LOSSES[name].function
    want, grad = f(x, target, return_grad=True)
    got, got_grad = f(x, target.astype(np.uint64), return_grad=True)
    assert got == want
    np.testing.assert_array_equal(got_grad, grad)


_DEVICE_CHECK = """
import warnings; warnings.simplefilter("ignore")
import numpy as np, torch, fastloss
from numba import cuda
x, p = np.zeros((2, 3), np.float32), np.full((2, 3), 1 / 3, np.float32)
losses = [fastloss.cross_entropy, fastloss.nll_loss, fastloss.focal_loss]
for value in (2**64 - 100, 2**63):
    t = np.array([1, value], np.uint64)
    strided = cuda.to_device(np.stack([t, t], 1))[:, 0]  # copied on the device
    for f, logits, target in [(f, x, t) for f in losses] + [
        (fastloss.sparse_categorical_crossentropy, p, t), (fastloss.cross_entropy, x, strided)
    ]:
        target = cuda.to_device(target) if isinstance(target, np.ndarray) else target
        try:
            f(cuda.to_device(logits), target)
        except IndexError as e:
            assert str(e).startswith(f"target: class index {value} "), e
        else:
            raise AssertionError(f"{f.__name__}: no IndexError for {value}")
t = np.array([2, 0], np.uint64)
assert fastloss.cross_entropy(cuda.to_device(x), cuda.to_device(t)).copy_to_host() == (
    fastloss.cross_entropy(x, t))
rng = np.random.default_rng(0)
for shapes in [((4,), (3, 4)), ((3, 1), (1, 4))]:
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    w = rng.uniform(0.1, 2, shapes[0])
    for name in ("mse_loss", "l1_loss", "huber_loss"):
        for reduction in ("mean", "sum", "none"):
            tx = torch.tensor(a, requires_grad=True)
            want = getattr(torch.nn.functional, name)(
                tx, torch.tensor(b), reduction=reduction, weight=torch.tensor(w))
            want.sum().backward()
            loss, grad = getattr(fastloss, name)(cuda.to_device(a), cuda.to_device(b),
                reduction=reduction, weight=cuda.to_device(w), return_grad=True)
            np.testing.assert_allclose(loss.copy_to_host(), want.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(grad.copy_to_host(), tx.grad.numpy(), rtol=1e-12)
print("ok")
"""


@pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"
)
def test_device_paths_under_the_simulator():
    """The device twins of defects 1 and 2 (uint64 indices; weight broadcast with torch's
    mean), under Numba's CUDA simulator in a process of its own (see test_cuda_suites.py)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-c", _DEVICE_CHECK],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# --- 2. torch's broadcasting of weight -----------------------------------------------------------

# (input, target): weight has the input's shape (torch's rule), the loss the broadcast shape
BROADCASTS = [((4,), (3, 4)), ((3, 1), (1, 4)), ((2, 1, 3), (4, 1)), ((3, 4), (4,)), ((5,), (5,))]
WEIGHTED = {"mse_loss": {}, "l1_loss": {}, "huber_loss": {"delta": 0.7}}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("name", list(WEIGHTED))
def test_weight_broadcasts_like_torch(name, shapes, dtype, reduction):
    rng = np.random.default_rng(len(name) + 7 * len(shapes[1]))
    x = rng.standard_normal(shapes[0]).astype(dtype)
    t = rng.standard_normal(shapes[1]).astype(dtype)
    w = rng.uniform(0.1, 2.0, shapes[0]).astype(dtype)
    kwargs = WEIGHTED[name]
    tx = torch().tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's and fastloss's target-size warning
        want = getattr(torch().nn.functional, name)(
            tx, torch().tensor(t), reduction=reduction, weight=torch().tensor(w), **kwargs
        )
        want.sum().backward()
        loss, grad = getattr(fastloss, name)(
            x, t, reduction=reduction, weight=w, return_grad=True, **kwargs
        )
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=rtol, atol=rtol)
    assert np.asarray(loss).dtype == dtype and np.shape(loss) == tuple(want.shape)
    assert grad.shape == x.shape and grad.dtype == dtype  # the gradient has input's shape
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=rtol, atol=rtol)


def test_weight_example_of_the_report():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fastloss.mse_loss(np.ones(4), np.zeros((3, 4)), weight=np.ones(4))
        want = torch().nn.functional.mse_loss(
            torch().ones(4), torch().zeros(3, 4), weight=torch().ones(4)
        )
    assert float(got) == float(want) == 3.0


@pytest.mark.parametrize("name", list(WEIGHTED))
def test_weight_not_of_input_shape_raises_like_torch(name):
    """torch requires ``weight.size() == input.size()``, even when it is the broadcast shape."""
    x, t, w = np.ones(4), np.zeros((3, 4)), np.ones((3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            getattr(torch().nn.functional, name)(
                torch().tensor(x), torch().tensor(t), weight=torch().tensor(w)
            )
        with pytest.raises(ValueError, match=r"^weight: .*\(4,\).*\(3, 4\)"):
            getattr(fastloss, name)(x, t, weight=w)


# --- 3. every scalar option names itself in its errors ------------------------------------------

INF_ALLOWED = {"delta", "beta", "softcap", "eps"}  # inf is a value torch takes for these
HUGE = 10**400  # no float holds it


def _kind(annotation: str) -> str:
    for kind in ("bool", "float", "int", "str"):
        if kind in annotation:
            return kind
    raise AssertionError(annotation)


def _bad_values(kind: str, none_ok: bool, name: str) -> list:
    """(value, exception) pairs every option of ``kind`` must refuse."""
    nan, inf = math.nan, math.inf
    if kind == "str":
        return [("a", ValueError), (None, ValueError)]
    cases = {
        "bool": [("a", TypeError), (nan, TypeError), (2, TypeError), (1.0, TypeError)],
        "int": [
            ("a", TypeError),
            (1.5, TypeError),
            (nan, TypeError),
            (inf, TypeError),
            (True, TypeError),
            (2**70, ValueError),
            (-(2**70), ValueError),
        ],
        "float": [("a", TypeError), (nan, ValueError), (HUGE, ValueError), ([1.0], TypeError)],
    }[kind]
    if kind == "float" and name not in INF_ALLOWED:
        cases.append((inf, ValueError))
    if not none_ok:
        cases.append((None, TypeError))
    return cases


def _option_cases():
    for loss, info in LOSSES.items():
        for p in inspect.signature(info.function).parameters.values():
            if p.default is inspect.Parameter.empty or p.name in info.data:
                continue
            if p.name in ("out", "weight", "pos_weight"):  # arrays, not scalar options
                continue
            kind = _kind(str(p.annotation))
            for value, error in _bad_values(kind, "None" in str(p.annotation), p.name):
                yield pytest.param(loss, p.name, value, error, id=f"{loss}-{p.name}-{value!r:.12}")


OPTION_CASES = list(_option_cases())


def test_option_cases_cover_the_reported_ones():
    found = {(c.values[0], c.values[1]) for c in OPTION_CASES}
    for case in [
        ("poisson_nll_loss", "eps"),
        ("focal_loss", "alpha"),
        ("categorical_crossentropy", "axis"),
        ("cross_entropy", "ignore_index"),
        ("sparse_categorical_crossentropy", "ignore_class"),
        ("mse_loss", "return_grad"),
        ("kl_div", "log_target"),
    ]:
        assert case in found


@pytest.mark.parametrize("loss, option, value, error", OPTION_CASES)
def test_bad_scalar_option_names_itself(loss, option, value, error):
    info = LOSSES[loss]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error) as raised:
            info.function(**_inputs(info), **{option: value})
    message = str(raised.value)
    assert message.startswith(f"{option}: "), message
    assert "got" in message and len(message) < 300, message


def test_reported_messages():
    x, y = np.ones(3), np.ones(3)
    with pytest.raises(TypeError, match="^eps: expected a real number, got 'a'"):
        fastloss.poisson_nll_loss(x, y, eps="a")
    with pytest.raises(TypeError, match="^alpha: expected a finite real number, got 'a'"):
        fastloss.focal_loss(np.zeros((2, 3)), [0, 1], alpha="a")
    with pytest.raises(TypeError, match="^axis: expected an int, got 'a'"):
        fastloss.categorical_crossentropy(np.full((2, 3), 1 / 3), np.eye(3)[:2], axis="a")
    logits, target = np.zeros((2, 3)), np.array([0, 1])
    for value in (math.inf, math.nan, 1.5, 2.0):
        with pytest.raises(TypeError, match=f"^ignore_index: expected an int, got {value}"):
            fastloss.cross_entropy(logits, target, ignore_index=value)
    with pytest.raises(ValueError, match=f"^ignore_index: .*int64.*, got {2**70}"):
        fastloss.cross_entropy(logits, target, ignore_index=2**70)
    with pytest.raises(ValueError, match=r"^eps: .*, got 10+\.\.\.$"):
        fastloss.poisson_nll_loss(x, y, eps=HUGE)


def test_ignore_index_float_refused_like_torch():
    x = torch().zeros(2, 3)
    with pytest.raises(TypeError, match="ignore_index"):
        torch().nn.functional.cross_entropy(x, torch().tensor([0, 1]), ignore_index=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        fastloss.cross_entropy(x.numpy(), [0, 1], ignore_index=1.5)


def test_good_scalar_options_still_accepted():
    logits, target = np.zeros((2, 3)), np.array([0, 1])
    want = fastloss.cross_entropy(logits, target, ignore_index=1)
    for value in (np.int64(1), np.int32(1), np.array(1)):
        assert fastloss.cross_entropy(logits, target, ignore_index=value) == want
    x, y = np.ones(3), np.ones(3)
    want = fastloss.poisson_nll_loss(x, y, eps=float(np.float32(1e-8)), full=True)
    assert fastloss.poisson_nll_loss(x, y, eps=np.float32(1e-8), full=np.True_) == want
    assert fastloss.huber_loss(x, y + 1, delta=math.inf) == fastloss.mse_loss(x, y + 1) / 2
    assert fastloss.huber_loss(x, y + 1, delta=2) == fastloss.huber_loss(x, y + 1, delta=2.0)
    assert np.isfinite(want)


# --- 4. bfloat16 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy", "kl_div", "cross_entropy"])
def test_torch_bfloat16_is_refused_clearly(name):
    info = LOSSES[name]
    inputs = _inputs(info)
    inputs["input"] = torch().tensor(np.asarray(inputs["input"])).to(torch().bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match="^input: bfloat16 is not supported yet") as raised:
            info.function(**inputs)
    assert "torch" in str(raised.value)


def test_torch_bfloat16_target_and_weight():
    x = np.ones(3, np.float32)
    bf16 = torch().ones(3, dtype=torch().bfloat16)
    with pytest.raises(TypeError, match="^target: bfloat16 is not supported yet"):
        fastloss.mse_loss(x, bf16)
    with pytest.raises(TypeError, match="^weight: bfloat16 is not supported yet"):
        fastloss.mse_loss(x, x, weight=bf16)


@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy", "cross_entropy"])
def test_ml_dtypes_bfloat16_is_refused_clearly(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    info = LOSSES[name]
    inputs = _inputs(info)
    inputs["input"] = np.asarray(inputs["input"]).astype(ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match="^input: bfloat16 is not supported yet"):
        info.function(**inputs)
    if name == "mse_loss":
        inputs = _inputs(info)
        inputs["target"] = inputs["target"].astype(ml_dtypes.bfloat16)
        with pytest.raises(TypeError, match="^target: bfloat16 is not supported yet"):
            info.function(**inputs)


# --- 5. the out= message -------------------------------------------------------------------------


def test_out_as_a_list_of_numbers_says_what_out_must_be():
    with pytest.raises(TypeError) as raised:
        fastloss.mse_loss(
            np.ones(12), np.ones(12), reduction="none", return_grad=True, out=[0.0] * 12
        )
    message = str(raised.value)
    assert message.startswith("out: expected an array"), message
    assert "tuple" in message and "list of 12 float" in message, message


def test_out_tuple_of_wrong_length():
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"^out: .*tuple.*got a tuple of 3"):
        fastloss.gaussian_nll_loss(x, x, x, return_grad=True, out=(x.copy(), x.copy(), x.copy()))
    with pytest.raises(ValueError, match=r"^out: .*got a tuple of 3"):
        fastloss.gaussian_nll_loss(x, x, 1.0, return_grad=True, out=(x.copy(),) * 3)


# --- 6. the source tree as an import root --------------------------------------------------------

_SOURCE_CHECK = (
    "import sys, fastloss\n"
    "assert fastloss.__file__.startswith(sys.argv[1]), fastloss.__file__\n"
    "print(float(fastloss.mse_loss([1.0], [0.0])))\n"
    "import fastloss.kernels.regression as k\n"
    "assert k.__file__.startswith(sys.argv[1]), k.__file__\n"
)


def test_source_tree_imports_and_runs(tmp_path):
    """A checkout whose ``fastloss/`` lacks ``kernels/`` (a sibling folder, mapped by pyproject)
    imported from its root, as after a regular ``pip install .`` run from the repository."""
    tree = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "fastloss", tree / "fastloss", ignore=ignore)
    shutil.copytree(ROOT / "kernels", tree / "kernels", ignore=ignore)
    # -S: no site, so no editable-install finder; dependencies from this environment's
    # site-packages, after the tree
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(tree), sysconfig.get_paths()["purelib"]]),
        "FASTLOSS_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", _SOURCE_CHECK, str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tree,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "1.0"


def test_installed_layout_still_resolves(tmp_path):
    """The editable install (this environment's) still maps fastloss.kernels to kernels/."""
    code = (
        "import fastloss, fastloss.kernels as k\n"
        "print(fastloss.__file__); print(k.__file__); print(len(fastloss.registry.LOSSES))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    package, kernels, count = result.stdout.split()
    assert Path(kernels) == ROOT / "kernels" / "__init__.py" and int(count) == len(LOSSES)
    assert Path(package).parent == Path(fastloss.__file__).parent


# --- checks of defects fixed earlier -------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, logit", [(np.float32, -3e38), (np.float64, -1.2e308)], ids=["f32", "f64"]
)
@pytest.mark.parametrize("gamma", [3.0, 1.5, 2.0])
def test_saturated_sigmoid_focal_gradient_like_torch(dtype, logit, gamma):
    x, t = np.array([logit], dtype), np.array([1.0], dtype)
    tx = torch().tensor(x, requires_grad=True)
    want = _torchvision_sigmoid_focal_loss(tx, torch().tensor(t), 0.25, gamma)
    want.sum().backward()
    loss, grad = fastloss.sigmoid_focal_loss(x, t, gamma=gamma, return_grad=True)
    assert tx.grad.item() == -0.25
    np.testing.assert_array_equal(grad, tx.grad.numpy())
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("n", [1000, (1 << 20) + 5])
@pytest.mark.parametrize("name", ["mse_loss", "rmse_loss", "huber_loss", "smooth_l1_loss"])
def test_same_bits_with_and_without_out_input(name, n, reduction):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 3
    t = rng.standard_normal(n)
    f = getattr(fastloss, name)
    loss, grad = f(x.copy(), t, reduction=reduction, return_grad=True)
    inplace = x.copy()
    loss_inplace, grad_inplace = f(inplace, t, reduction=reduction, return_grad=True, out=inplace)
    assert grad_inplace is inplace
    assert np.float64(loss).tobytes() == np.float64(loss_inplace).tobytes()
    np.testing.assert_array_equal(grad, grad_inplace)


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_mape_none_same_bits_with_and_without_grad(dtype):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.01, 3, 5000).astype(dtype)
    t = rng.uniform(-3, 3, 5000).astype(dtype)
    t[:10] = 0
    alone = fastloss.mape_loss(x, t, reduction="none")
    fused, _ = fastloss.mape_loss(x, t, reduction="none", return_grad=True)
    assert alone.tobytes() == fused.tobytes()


def test_registry_is_there_after_import_fastloss():
    code = "import fastloss; print(len(fastloss.registry.LOSSES))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(result.stdout) == len(LOSSES) > 0
