"""fastloss.Accumulator: every registered loss, chunked and merged, with the one-shot bits."""

import dataclasses
import functools
import inspect
import math
import pickle
import warnings

import numpy as np
import pytest

import fastloss
from fastloss import _reduction
from fastloss.registry import LOSSES

# chunk boundaries along axis 0: a single element, primes, no multiple of a segment (256) or of
# a parallel task (65536 elements)
ELEMENT_CUTS = [0, 1, 2, 13, 257, 4099, 65537, 70007]
ROW_CUTS = [0, 1, 2, 13, 37, 70]


def _cases():
    for name in LOSSES:
        reductions = ["mean", "sum"] + (["batchmean"] if name == "kl_div" else [])
        for reduction in reductions:
            yield pytest.param(name, reduction, id=f"{name}-{reduction}")


def _inputs(name: str, dtype=np.float32, seed: int = 0):
    info = LOSSES[name]
    inputs = info.make_inputs(np.random.default_rng(seed), 70007, dtype)
    if "axis" in inspect.signature(info.function).parameters and inputs[info.data[0]].ndim == 1:
        # Keras averages over the last axis: the chunks are samples, 7 elements each (and
        # some chunks are empty)
        inputs = {k: v.reshape(-1, 7) for k, v in inputs.items()}
        return inputs, [c // 7 for c in ELEMENT_CUTS[:-1]] + [10001]
    first = inputs[info.data[0]]
    if first.ndim > 1:  # whole rows: the cuts end at the last row
        return inputs, ROW_CUTS[:-1] + [first.shape[0]]
    return inputs, ELEMENT_CUTS


def _chunks(inputs: dict, cuts):
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        yield lo, {k: v[lo:hi] for k, v in inputs.items()}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's "mean" warning, once per chunk
        yield


@pytest.mark.parametrize(("name", "reduction"), list(_cases()))
def test_chunks_in_order_and_merged_in_a_tree_give_the_one_shot_bits(name, reduction):
    info = LOSSES[name]
    inputs, cuts = _inputs(name)
    want = info.function(**inputs, reduction=reduction)

    acc = fastloss.Accumulator(name, reduction=reduction)
    for _, chunk in _chunks(inputs, cuts):
        acc.update(**chunk)
    assert _same(acc.compute(), want), (acc.compute(), want)

    parts = []
    first = inputs[info.data[0]]
    # positions count elements for an elementwise loss, rows for a row loss
    per_chunk_row = (
        1 if info.empty_inputs().get(info.data[0]).ndim > 1 else math.prod(first.shape[1:])
    )
    for lo, chunk in _chunks(inputs, cuts):
        part = fastloss.Accumulator(name, start=lo * per_chunk_row, reduction=reduction)
        part.update(**chunk)
        parts.append(pickle.loads(pickle.dumps(part)))  # as a process pool sends them back
    # a tree that keeps the order: ((p0 p1) (p2 p3)) ((p4 ...
    while len(parts) > 1:
        parts = [
            parts[i].merge(parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    merged = fastloss.Accumulator(name, reduction=reduction).merge(parts[0])
    assert _same(merged.compute(), want)


def test_weighted_and_ignored_denominators():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(70007).astype(np.float32)
    t = rng.standard_normal(70007).astype(np.float32)
    w = rng.random(70007).astype(np.float32)
    acc = fastloss.Accumulator("mse_loss")
    for _, chunk in _chunks({"input": x, "target": t, "weight": w}, ELEMENT_CUTS):
        acc.update(**chunk)
    assert _same(acc.compute(), fastloss.mse_loss(x, t, weight=w))

    logits = rng.standard_normal((500, 31)).astype(np.float32)
    labels = rng.integers(0, 31, 500)
    labels[::5] = 7
    class_weight = rng.random(31).astype(np.float32)
    options = {"weight": class_weight, "ignore_index": 7, "label_smoothing": 0.05}
    acc = fastloss.Accumulator("cross_entropy", **options)
    for lo, hi in [(0, 1), (1, 256), (256, 257), (257, 500)]:
        acc.update(logits[lo:hi], labels[lo:hi])
    assert _same(acc.compute(), fastloss.cross_entropy(logits, labels, **options))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunk_gradients_are_the_one_shot_gradient(reduction):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((300, 50)).astype(np.float32)
    labels = rng.integers(0, 50, 300)
    want, want_grad = fastloss.cross_entropy(logits, labels, reduction=reduction, return_grad=True)
    acc = fastloss.Accumulator("cross_entropy", reduction=reduction, total=300)
    grads = [acc.update(logits[lo:hi], labels[lo:hi], return_grad=True)
             for lo, hi in [(0, 7), (7, 256), (256, 300)]]  # fmt: skip
    assert _same(np.concatenate(grads), want_grad)
    assert _same(acc.compute(), want)

    x = rng.standard_normal(70007).astype(np.float32)
    t = rng.standard_normal(70007).astype(np.float32)
    want, want_grad = fastloss.huber_loss(x, t, reduction=reduction, return_grad=True)
    acc = fastloss.Accumulator("huber_loss", reduction=reduction, total=x.size)
    out = np.empty_like(x)
    for lo, hi in zip(ELEMENT_CUTS, ELEMENT_CUTS[1:], strict=False):
        grad = acc.update(x[lo:hi], t[lo:hi], return_grad=True, out=out[lo:hi])
        assert np.shares_memory(grad, out)
    assert _same(out, want_grad)
    assert _same(acc.compute(), want)


def test_a_mean_gradient_needs_the_total():
    acc = fastloss.Accumulator("mse_loss")
    with pytest.raises(ValueError, match="total="):
        acc.update(np.ones(3), np.zeros(3), return_grad=True)
    assert acc.end == 0 and np.isnan(acc.compute())  # nothing taken
    with pytest.raises(ValueError, match="final loss"):
        fastloss.Accumulator("rmse_loss", total=3).update(np.ones(3), np.zeros(3), return_grad=True)


def test_a_chunk_that_differs_is_refused_and_changes_nothing():
    acc = fastloss.Accumulator("mse_loss", reduction="sum")
    acc.update(np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32))
    before = acc.compute()
    with pytest.raises(ValueError, match="dtype"):
        acc.update(np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        acc.update(np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="weight: given for this chunk"):
        acc.update(np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32),
                   weight=np.ones((2, 3), np.float32))  # fmt: skip
    with pytest.raises(ValueError, match="expected values in"):  # torch's range check
        bce = fastloss.Accumulator("binary_cross_entropy")
        bce.update(np.float32([0.5]), np.float32([1.0]))
        bce.update(np.float32([2.0]), np.float32([1.0]))
    assert _same(bce.compute(), fastloss.binary_cross_entropy(np.float32([0.5]), np.float32([1.0])))
    assert _same(acc.compute(), before)
    assert acc.end == 12


def test_keras_chunks_are_samples():
    acc = fastloss.Accumulator("binary_crossentropy", reduction="sum")
    with pytest.raises(ValueError, match="chunks are samples along axis 0"):
        acc.update(np.full(4, 0.5, np.float32), np.ones(4, np.float32))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="loss: expected a registered loss"):
        fastloss.Accumulator("nope")
    with pytest.raises(ValueError, match="reduction: an Accumulator reduces"):
        fastloss.Accumulator("mse_loss", reduction="none")
    with pytest.raises(TypeError, match="delta: not an option of mse_loss"):
        fastloss.Accumulator("mse_loss", delta=1.0)
    with pytest.raises(ValueError, match="start: expected an integer"):
        fastloss.Accumulator("mse_loss", start=-1)
    with pytest.raises(TypeError, match="label_smoothing: not a chunk array"):
        fastloss.Accumulator("cross_entropy").update(np.ones((2, 3)), [0, 1], label_smoothing=0.1)
    a = fastloss.Accumulator("mse_loss")
    a.update(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="starts at element 3"):
        a.merge(fastloss.Accumulator("mse_loss", start=5))
    with pytest.raises(ValueError, match="other: expected an accumulator of mse_loss"):
        a.merge(fastloss.Accumulator("l1_loss", start=3))
    with pytest.raises(ValueError, match="merge it into"):
        b = fastloss.Accumulator("mse_loss", start=3)
        b.update(np.ones(3), np.zeros(3))
        b.compute()


def test_nothing_gives_the_one_shot_call_on_nothing():
    assert np.isnan(fastloss.Accumulator("mse_loss").compute())
    assert fastloss.Accumulator("mse_loss", reduction="sum").compute() == 0
    assert np.isnan(fastloss.Accumulator("cross_entropy").compute())
    acc = fastloss.Accumulator("l1_loss")
    acc.update(np.ones(3), np.zeros(3))
    acc.reset()
    assert np.isnan(acc.compute())


class _Interrupted(Exception):
    pass


def _state(acc) -> list:
    """What an accumulator's reductions hold (the stack up to its depth: the entries above
    it are scratch), to compare before and after a failed update."""
    found = []
    for name, quantity in acc._sink.quantities.items():
        for partial in (quantity.sum, quantity.weights):
            if partial is None:
                found.append(None)
                continue
            depth = partial.depth
            found.append((name, partial.start, partial.end, depth, partial.state.tobytes(),
                          partial.levels[:depth].tobytes(), partial.indices[:depth].tobytes(),
                          partial.values[:depth].tobytes(), partial.head_v.tobytes(),
                          partial.head_f.tobytes()))  # fmt: skip
        found.append(quantity.count)
    return found


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_chunk_that_raises_after_its_kernels_ran_is_undone(name, monkeypatch):
    """Every chunk first fails once after the loss has run on it (all of its kernels, every
    reduced quantity taken), then goes in: the result is still the one-shot bits. The
    failures alternate between an exception and a KeyboardInterrupt."""
    info = LOSSES[name]
    function = info.function
    failing = {"now": False, "count": 0}

    @functools.wraps(function)
    def flaky(*args, **kwargs):
        result = function(*args, **kwargs)
        if failing["now"]:
            failing["count"] += 1
            raise KeyboardInterrupt if failing["count"] % 2 else _Interrupted
        return result

    monkeypatch.setitem(LOSSES, name, dataclasses.replace(info, function=flaky))
    inputs, cuts = _inputs(name)
    want = function(**inputs, reduction="mean")
    acc = fastloss.Accumulator(name, reduction="mean")
    # the chunks after the first go to an accumulator that starts there, inside a segment
    # (it keeps its first values raw), merged at the end
    late = None
    for lo, chunk in _chunks(inputs, cuts):
        if late is None and lo:
            late = fastloss.Accumulator(name, start=acc.end, reduction="mean")
        target = acc if late is None else late
        before = _state(target)
        failing["now"] = True
        with pytest.raises((KeyboardInterrupt, _Interrupted)):
            target.update(**chunk)
        assert _state(target) == before
        target = pickle.loads(pickle.dumps(target))  # what was undone pickles too
        if late is None:
            acc = target
        else:
            late = target
        failing["now"] = False
        target.update(**chunk)
    if late is not None:
        acc.merge(late)
    assert _same(acc.compute(), want), (acc.compute(), want)


def test_an_undone_chunk_restores_the_nodes_it_combined(monkeypatch):
    """A chunk that closes segments combines the stack's nodes below its top in place
    (768 elements hold the nodes (1, 0) and (0, 2); the segment 3 makes them (2, 0)); a chunk
    that fails after its loss kernel ran, in the kernel of its weight sum, puts back the
    nodes, the lanes and the weights' state."""
    rng = np.random.default_rng(5)
    x, t = (rng.standard_normal(4096).astype(np.float32) for _ in range(2))
    w = rng.random(4096).astype(np.float32)
    real = _reduction.accumulate
    calls = {"n": 0, "fail": False}

    def accumulate(*args, **kwargs):
        total = real(*args, **kwargs)
        calls["n"] += 1
        if calls["fail"] and calls["n"] == 2:  # the loss's sum went in, then its weights'
            raise _Interrupted
        return total

    monkeypatch.setattr(_reduction, "accumulate", accumulate)
    cuts = [0, 768, 1024, 1031, 4096]
    acc = fastloss.Accumulator("mse_loss")
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        chunk = (x[lo:hi], t[lo:hi])
        before = _state(acc)
        calls.update(n=0, fail=True)
        with pytest.raises(_Interrupted):
            acc.update(*chunk, weight=w[lo:hi])
        assert calls["n"] == 2 and acc.end == lo
        assert _state(acc) == before
        calls.update(n=0, fail=False)
        acc.update(*chunk, weight=w[lo:hi])
    assert _same(acc.compute(), fastloss.mse_loss(x, t, weight=w))


def test_overlapping_updates_of_one_accumulator_are_refused(monkeypatch):
    """An update that starts while another of the same accumulator runs (a second thread, a
    loss that calls back) raises instead of interleaving two kernels' writes to one state; the
    update it interrupted is undone."""
    info = LOSSES["mse_loss"]
    function = info.function
    holder = {}

    @functools.wraps(function)
    def reentrant(*args, **kwargs):
        holder["acc"].update(np.ones(2, np.float32), np.zeros(2, np.float32))
        return function(*args, **kwargs)

    x, t = np.ones(5, np.float32), np.zeros(5, np.float32)
    acc = fastloss.Accumulator("mse_loss", reduction="sum")
    acc.update(x, t)
    before = _state(acc)
    monkeypatch.setitem(LOSSES, "mse_loss", dataclasses.replace(info, function=reentrant))
    holder["acc"] = acc = pickle.loads(pickle.dumps(acc))  # takes the patched function
    with pytest.raises(RuntimeError, match="already taking a chunk"):
        acc.update(x, t)
    assert _state(acc) == before
    monkeypatch.undo()
    acc = pickle.loads(pickle.dumps(acc))
    acc.update(x, t)
    assert _same(acc.compute(), np.float32(10.0))


def _hess_cases():
    for name, info in LOSSES.items():
        if "return_hess" in inspect.signature(info.function).parameters and info.chunk_grad:
            for reduction in ("sum", "mean"):
                yield pytest.param(name, reduction, id=f"{name}-{reduction}")


@pytest.mark.parametrize(("name", "reduction"), list(_hess_cases()))
def test_chunk_second_derivatives_are_the_one_shot_ones(name, reduction):
    """``update(..., return_hess=True)`` gives each chunk's gradient and second derivative, the
    one-shot call's bits, and leaves the loss the one-shot loss."""
    info = LOSSES[name]
    inputs, cuts = _inputs(name, np.float64, seed=5)
    options = {**info.job, "reduction": reduction}
    first = inputs[info.data[0]]
    units = first.size if len(cuts) == len(ELEMENT_CUTS) else first.shape[0]  # elements, rows
    want, want_grad, want_hess = info.function(**inputs, **options, return_hess=True)
    acc = fastloss.Accumulator(name, **options, total=units)
    grads, hessians = [], []
    for _, chunk in _chunks(inputs, cuts):
        grad, hess = acc.update(**chunk, return_hess=True)
        grads.append(grad)
        hessians.append(hess)
    if isinstance(want_grad, tuple):  # gaussian_nll_loss: the input's and the variance's
        for j, want_part in enumerate(want_grad):
            assert _same(np.concatenate([g[j] for g in grads]), want_part), f"grad {j}"
    else:
        assert _same(np.concatenate(grads), want_grad), "grad"
    assert _same(np.concatenate(hessians), want_hess), "hess"
    assert _same(acc.compute(), want)


def test_return_hess_belongs_to_update():
    with pytest.raises(TypeError, match="update"):
        fastloss.Accumulator("mse_loss", return_hess=True)
    with pytest.raises((TypeError, ValueError), match="return_hess"):
        fastloss.Accumulator("mse_loss").update(np.ones(3), np.zeros(3), return_hess="yes")
