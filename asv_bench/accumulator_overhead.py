#!/usr/bin/env python
"""The cost of streaming: ``fastloss.Accumulator.update`` against the one-shot call.

    python asv_bench/accumulator_overhead.py [--n 1000000 10000000] [--chunks 1 10]
                                             [--losses mse_loss cross_entropy ...]
                                             [--grad] [--rounds 31]

For each registered loss (its registry inputs of ``n`` elements, float32, ``reduction="mean"``)
it cuts the data into ``chunks`` consecutive chunks and times, round by round:

- ``update``: each chunk's ``Accumulator.update`` against the one-shot call on that same chunk,
  summed over the chunks. This is the cost an update adds to the kernel: the target is 1.10 or
  less for chunks of 10^6 elements or more.
- ``stream``: a whole stream (constructor, every update, ``compute()``) against the one-shot
  call on all the data: the update's cost plus what chunking itself costs (a chunk below
  ``fastloss._elementwise.PARALLEL_THRESHOLD`` runs the serial kernel where the whole array
  would run the parallel one).

The two calls of a pair run in one order in even rounds and in the other in odd ones; a figure
is the geometric mean of the median ratio of each order, which cancels what being first or
second costs (a chunk that fits in the last-level cache is faster the second time it is read;
the allocator may hand the second call the memory the first one faulted in). The spread of the
ratios (their quartiles, the median of each order) says how quiet the machine was.

With ``--grad`` the updates and the one-shot calls also return the gradient (the Accumulator
is given ``total=``). Every round checks that ``compute()`` equals the one-shot value bit for
bit.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from statistics import median, quantiles

import numpy as np

import fastloss
from fastloss.registry import LOSSES


def _split(inputs: dict, data: tuple[str, ...], chunks: int) -> list[dict]:
    first = inputs[data[0]]
    cuts = np.linspace(0, first.shape[0], chunks + 1).astype(int)
    return [
        {k: (v[lo:hi] if k in data and hasattr(v, "shape") else v) for k, v in inputs.items()}
        for lo, hi in zip(cuts, cuts[1:], strict=False)
    ]


def _total(info, inputs: dict) -> float:
    """The denominator of the whole mean (for a chunk's gradient): the element count, or the
    row count of a row loss."""
    first = inputs[info.data[0]]
    return float(first.shape[0] if info.empty_inputs()[info.data[0]].ndim > 1 else first.size)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _pair(a, b, order: int) -> tuple[float, float]:
    """The times of calls ``a`` and ``b``, run ``a`` first (order 1) or ``b`` first (0)."""
    if order:
        first = _timed(a)
        return first, _timed(b)
    second = _timed(b)
    return _timed(a), second


def _ratio(ratios: list[list[float]]) -> float:
    """The ratio of two calls timed in both orders: the geometric mean of the median ratio
    of each order, so that what being first or second costs (a chunk that fits in the
    last-level cache is faster the second time it is read; the allocator may hand the second
    call memory the first one faulted in) cancels."""
    return math.sqrt(median(ratios[0]) * median(ratios[1]))


def measure(name: str, n: int, chunks: int, rounds: int, grad: bool = False) -> dict:
    info = LOSSES[name]
    inputs = info.make_inputs(np.random.default_rng(0), n, np.float32)
    parts = _split(inputs, info.data, chunks)
    options = {"reduction": "mean"}
    if grad:
        options["total"] = _total(info, inputs)
    call = {"reduction": "mean", "return_grad": grad}
    want = info.function(**inputs, **call)
    want = np.asarray(want[0] if grad else want).tobytes()
    times = {"chunk_one_shot": [], "update": [], "one_shot": [], "stream": []}
    update_ratios, stream_ratios = [[], []], [[], []]

    streamed = {}

    def stream():
        acc = fastloss.Accumulator(name, **options)
        for part in parts:
            acc.update(**part, return_grad=grad)
        streamed["value"] = acc.compute()

    whole = functools.partial(info.function, **inputs, **call)
    for r in range(rounds + 1):
        order = r % 2
        # each chunk: its one-shot call and its update, in this round's order
        acc = fastloss.Accumulator(name, **options)
        chunk_s = update_s = 0.0
        for part in parts:
            one = functools.partial(info.function, **part, **call)
            upd = functools.partial(acc.update, **part, return_grad=grad)
            one, upd = _pair(one, upd, order)
            chunk_s += one
            update_s += upd
        assert np.asarray(acc.compute()).tobytes() == want, name
        # the whole data: the one-shot call and a whole stream, in this round's order
        whole_s, stream_s = _pair(whole, stream, order)
        assert np.asarray(streamed.pop("value")).tobytes() == want, name
        if r:  # the first round compiles
            for key, value in zip(times, (chunk_s, update_s, whole_s, stream_s), strict=True):
                times[key].append(value)
            update_ratios[order].append(update_s / chunk_s)
            stream_ratios[order].append(stream_s / whole_s)
    every = update_ratios[0] + update_ratios[1]
    return {
        "loss": name,
        "n": n,
        "chunks": chunks,
        "grad": grad,
        **{key + "_ms": median(value) * 1e3 for key, value in times.items()},
        "update_ratio": _ratio(update_ratios),
        "update_ratio_by_order": [median(update_ratios[0]), median(update_ratios[1])],
        "update_ratio_quartiles": quantiles(every, n=4)[::2],
        "stream_ratio": _ratio(stream_ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--losses", nargs="+", default=["mse_loss", "poisson_nll_loss",
                        "binary_cross_entropy_with_logits", "cross_entropy"])  # fmt: skip
    parser.add_argument("--grad", action="store_true", help="also time return_grad=True")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        measure(name, n, chunks, args.rounds, grad)
        for name in args.losses
        for grad in ((False, True) if args.grad else (False,))
        for n in args.n
        for chunks in args.chunks
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"{'loss':<30} {'grad':>4} {'n':>10} {'chunks':>6} | {'one-shot':>9} {'update':>9} "
        f"{'ratio':>6} {'by order':>13} | {'one-shot':>9} {'stream':>9} {'ratio':>6}"
    )
    print(f"{'':<56}| {'the chunks, ms (medians)':<40}| {'the whole data, ms':<26}")
    for row in rows:
        first, second = row["update_ratio_by_order"]
        print(
            f"{row['loss']:<30} {'yes' if row['grad'] else 'no':>4} {row['n']:>10,} "
            f"{row['chunks']:>6} | {row['chunk_one_shot_ms']:>9.3f} {row['update_ms']:>9.3f} "
            f"{row['update_ratio']:>6.3f} {f'{first:.2f} {second:.2f}':>13} | "
            f"{row['one_shot_ms']:>9.3f} {row['stream_ms']:>9.3f} {row['stream_ratio']:>6.3f}"
        )


if __name__ == "__main__":
    main()
