"""Broadcast operands reach the kernels without a copy, and with the bits of the copy.

A target, weight or pos_weight that broadcasts to the input (a row against a matrix, a column,
a scalar through ``np.broadcast_to``) goes to the kernels as its own memory and a two-level
pattern (``fastloss._elementwise._broadcast_pattern``); every result here is compared bit for
bit with the same call on the operand materialised by ``np.ascontiguousarray``.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import torch as _torch

import fastloss
from fastloss import _elementwise
from fastloss._elementwise import PARALLEL_THRESHOLD, _broadcast_pattern

REDUCTIONS = ("none", "mean", "sum")
MODES = ("value", "grad", "hess")
SCALAR = "scalar"


def _bits(result) -> list[tuple]:
    """Every array of a result (loss, gradients, second derivative) as dtype, shape, bytes."""
    if isinstance(result, tuple):
        return [part for item in result for part in _bits(item)]
    array = np.asarray(result)
    return [(array.dtype.str, array.shape, array.tobytes())]


def _call(function, *args, mode: str, **kwargs):
    extra = {"value": {}, "grad": {"return_grad": True}, "hess": {"return_hess": True}}[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's target-size warning
        return function(*args, **kwargs, **extra)


@pytest.fixture
def patterned(monkeypatch):
    """The ``patterned`` positions of every elementwise module a call asks for."""
    seen = []
    module = _elementwise._module

    def spy(kernel_spec, flags, weighted, patterned=()):
        seen.append(patterned)
        return module(kernel_spec, flags, weighted, patterned)

    monkeypatch.setattr(_elementwise, "_module", spy)
    return seen


def _operand(rng, shape, tshape, low=-2.0, high=2.0):
    """An operand of ``tshape`` (a scalar: its view through ``np.broadcast_to``) as given to
    the loss, and its copy at the full ``shape``."""
    if tshape == SCALAR:
        given = np.broadcast_to(np.float64(rng.uniform(low, high)), shape)
    else:
        given = rng.uniform(low, high, tshape)
    return given, np.ascontiguousarray(np.broadcast_to(given, shape))


# (input shape, target shape, whether the target collapses to two levels)
SMALL = [
    ((37, 53), (53,), True),
    ((37, 53), (37, 1), True),
    ((37, 53), SCALAR, True),
    ((5, 7, 11), (7, 11), True),
    ((5, 7, 11), (5, 7, 1), True),
    ((5, 7, 11), (5, 1, 11), False),
    ((5, 7, 11), (7, 1), False),
]
# above PARALLEL_THRESHOLD, no multiple of a block (65536) or a segment (256)
LARGE = [
    ((1031, 1029), (1029,), True),
    ((1031, 1029), (1031, 1), True),
    ((1031, 1029), SCALAR, True),
]
assert 1031 * 1029 > PARALLEL_THRESHOLD


@pytest.mark.parametrize("shape, tshape, collapses", SMALL + LARGE, ids=str)
def test_mse_broadcast_target_same_bits(shape, tshape, collapses, patterned):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    target, copy = _operand(rng, shape, tshape)
    # the parallel kernels: the fused ones (value only: the memory test), fewer compilations
    modes = MODES if x.size < PARALLEL_THRESHOLD else ("hess",)
    for reduction in REDUCTIONS:
        for mode in modes:
            patterned.clear()
            got = _call(fastloss.mse_loss, x, target, reduction=reduction, mode=mode)
            assert patterned == [(1,) if collapses else ()], (reduction, mode)
            expected = _call(fastloss.mse_loss, x, copy, reduction=reduction, mode=mode)
            assert _bits(got) == _bits(expected), (reduction, mode)


def test_pattern_reads_the_elements():
    """The pattern's formula gives each element of the view, in C order (NumPy only)."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 40))
    views = [
        np.broadcast_to(base[2, :9], (4, 9)),
        np.broadcast_to(base[:5, 3:4], (5, 7)),
        np.broadcast_to(base[1, 0], (3, 4, 5)),
        np.broadcast_to(base[:3, ::4], (2, 3, 10)),  # strided rows, merged
        np.broadcast_to(base[:, 5], (2, 3, 6)).transpose(1, 0, 2)[:, :1],  # size-1 dims
    ]
    for view in views:
        memory, (outer, step, inner, offset) = _broadcast_pattern(view)
        assert not memory.flags.writeable and offset == 0
        i = np.arange(view.size)
        np.testing.assert_array_equal(
            memory[(i // inner) * outer + (i % inner) * step], view.ravel()
        )
    assert _broadcast_pattern(base) is None  # no broadcast
    assert _broadcast_pattern(np.broadcast_to(base[::-1, :1], (6, 3))) is None  # negative
    assert _broadcast_pattern(np.broadcast_to(base[None, :3, :1], (2, 3, 4))) is None  # 3 levels


LOSSES = [  # l1_loss: below, with a weight
    ("smooth_l1_loss", {"beta": 0.7}, False),
    ("poisson_nll_loss", {}, True),
    ("log_cosh_loss", {}, False),
]


@pytest.mark.parametrize("name, kwargs, positive", LOSSES, ids=[c[0] for c in LOSSES])
def test_losses_broadcast_target_same_bits(name, kwargs, positive, patterned):
    rng = np.random.default_rng(2)
    shape = (37, 53)
    x = rng.standard_normal(shape)
    target, copy = _operand(rng, shape, (53,), *((0.0, 4.0) if positive else ()))
    function = getattr(fastloss, name)
    for reduction in REDUCTIONS:
        for mode in ("hess",):
            patterned.clear()
            got = _call(function, x, target, reduction=reduction, mode=mode, **kwargs)
            assert patterned == [(1,)]
            expected = _call(function, x, copy, reduction=reduction, mode=mode, **kwargs)
            assert _bits(got) == _bits(expected), (reduction, mode)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_broadcast_weight_same_bits(name, patterned, monkeypatch):
    """A weight broadcast to the input's shape, and for l1 and huber the target too; the weighted
    mean's denominator sums the broadcast weight in chunks (made small here, and no multiple
    of a segment) with the bits of the whole sum."""
    monkeypatch.setattr(_elementwise, "_WEIGHT_CHUNK", 300)
    rng = np.random.default_rng(3)
    shape = (37, 53)
    x = rng.standard_normal(shape)
    weight, weight_copy = _operand(rng, shape, (53,), 0.0, 2.0)
    weight = np.broadcast_to(weight, shape)  # weight= takes the input's shape
    target, target_copy = _operand(rng, shape, (37, 1))
    if name == "mse_loss":
        target = target_copy
    function = getattr(fastloss, name)
    kwargs = {"delta": 0.6} if name == "huber_loss" else {}
    for reduction in REDUCTIONS:
        for mode in ("hess",):
            patterned.clear()
            got = _call(
                function, x, target, reduction=reduction, mode=mode, weight=weight, **kwargs
            )
            assert patterned[0] == ((2,) if name == "mse_loss" else (1, 2))
            expected = _call(
                function,
                x,
                target_copy,
                reduction=reduction,
                mode=mode,
                weight=weight_copy,
                **kwargs,
            )
            assert _bits(got) == _bits(expected), (reduction, mode)


def test_bce_with_logits_broadcast_weights_same_bits(patterned):
    rng = np.random.default_rng(4)
    shape = (37, 53)
    x = rng.standard_normal(shape)
    t = rng.uniform(0, 1, shape)
    weight = rng.uniform(0, 2, shape[-1])
    pos_weight = rng.uniform(0.5, 3, (shape[0], 1))
    weight_copy = np.ascontiguousarray(np.broadcast_to(weight, shape))
    pos_copy = np.ascontiguousarray(np.broadcast_to(pos_weight, shape))
    function = fastloss.binary_cross_entropy_with_logits
    for reduction in REDUCTIONS:
        for mode in ("hess",):
            patterned.clear()
            got = _call(
                function, x, t, weight, reduction=reduction, pos_weight=pos_weight, mode=mode
            )
            assert patterned == [(2, 3)]
            expected = _call(
                function, x, t, weight_copy, reduction=reduction, pos_weight=pos_copy, mode=mode
            )
            assert _bits(got) == _bits(expected), (reduction, mode)


def test_accumulator_broadcast_target_same_bits(monkeypatch, patterned):
    """Chunks with a broadcast target continue the state as materialised ones do, also for an
    accumulator that starts inside a segment (its first elements kept raw) and merges; a
    broadcast weight's sum goes into the denominator in chunks."""
    monkeypatch.setattr(_elementwise, "_WEIGHT_CHUNK", 300)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((41, 53))
    row = rng.uniform(-1, 1, 53)
    w = rng.uniform(0, 2, 53)
    results = []
    for materialise in (False, True):
        wrap = np.ascontiguousarray if materialise else (lambda a: a)
        acc = fastloss.Accumulator("mse_loss", reduction="sum")
        grads = []
        for lo, hi in [(0, 3), (3, 4), (4, 29), (29, 41)]:
            target = wrap(np.broadcast_to(row, (hi - lo, 53)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                grads.append(acc.update(x[lo:hi], target, return_grad=True))
        flat = x.ravel()
        head = fastloss.Accumulator("mse_loss", reduction="sum")
        tail = fastloss.Accumulator("mse_loss", reduction="sum", start=100)
        head.update(flat[:100], wrap(np.broadcast_to(np.float64(0.25), (100,))))
        grads.append(
            tail.update(
                flat[100:],
                wrap(np.broadcast_to(np.float64(0.25), (flat.size - 100,))),
                return_grad=True,
            )[1]  # fmt: skip
        )
        weighted = fastloss.Accumulator("mse_loss", reduction="mean", total=1.0)
        for lo, hi in [(0, 7), (7, 41)]:
            weight = wrap(np.broadcast_to(w, (hi - lo, 53)))
            grads.append(weighted.update(x[lo:hi], x[lo:hi] * 0.5, weight=weight, return_grad=True))
        assert ((1,) in patterned) != materialise and ((2,) in patterned) != materialise
        patterned.clear()
        results.append(
            _bits((acc.compute(), head.merge(tail).compute(), weighted.compute(), *grads))
        )
    assert results[0] == results[1]


def test_broadcast_target_allocates_no_copy():
    """mse_loss on 2^22 float64 elements with a scalar target broadcast to them: NumPy
    allocates far less than the input (a copy was the input's size)."""
    x = np.random.default_rng(6).standard_normal(1 << 22)
    target = np.broadcast_to(np.float64(0.5), x.shape)
    part = PARALLEL_THRESHOLD + 1  # the parallel kernel, compiled before tracing
    fastloss.mse_loss(x[:part], target[:part], reduction="sum")
    tracemalloc.start()
    try:
        got = fastloss.mse_loss(x, target, reduction="sum")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 8, peak
    expected = fastloss.mse_loss(x, np.ascontiguousarray(target), reduction="sum")
    assert _bits(got) == _bits(expected)


def test_mse_broadcast_target_against_torch():
    torch = _torch()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 53))
    row = rng.standard_normal(53)
    value, grad = _call(fastloss.mse_loss, x, row, reduction="mean", mode="grad")
    tx = torch.from_numpy(x).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = torch.nn.functional.mse_loss(tx, torch.from_numpy(row))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_patterned_loop_vectorises_without_calls():
    """The element loop reads the gathered buffer as a contiguous slice: it still vectorises,
    and the gather and the per-element helper are inlined (a fresh, uncached compilation)."""
    import re

    from numba import njit

    from fastloss._reduction import fresh_state
    from fastloss.kernels import elementwise, regression
    from fastloss.kernels._jit import KERNEL_OPTIONS

    module = elementwise.kernels(regression.MSE, (), False, (1,))
    kernel = njit(**dict(KERNEL_OPTIONS, cache=False))(module.reduce_value_grad_serial.py_func)
    x = np.linspace(0.1, 0.9, 600).astype(np.float32)
    memory = np.linspace(0, 1, 7).astype(np.float32)
    memory.flags.writeable = False
    pattern = np.array([0, 1, 7, 0], np.int64)
    grad = np.empty_like(x)
    kernel(x, memory, pattern, np.float32(1.0), grad, 0, *fresh_state(), 0)
    ir = kernel.inspect_llvm(kernel.signatures[0])
    assert re.search(r"<(2|4|8) x float>", ir), "loop not vectorised"
    calls = [line for line in ir.splitlines() if " call " in line and "8fastloss7kernels" in line]
    assert not [line for line in calls if "9reduction" not in line], calls[:3]
