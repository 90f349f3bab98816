#!/usr/bin/env python
"""The cost of streaming: ``fastloss.Accumulator.update`` against the one-shot call.

    python asv_bench/accumulator_overhead.py [--n 1000000 10000000] [--chunks 1 10]
                                             [--losses mse_loss cross_entropy ...] [--rounds 15]

For each registered loss (its registry inputs of ``n`` elements) it times, interleaved round by
round, the one-shot call (``reduction="mean"``, forward only) and an Accumulator fed the same
data in ``chunks`` consecutive updates followed by ``compute()``; the figure is the median over
the rounds of the ratio accumulator / one-shot. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

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


def measure(name: str, n: int, chunks: int, rounds: int) -> dict:
    info = LOSSES[name]
    inputs = info.make_inputs(np.random.default_rng(0), n, np.float32)
    parts = _split(inputs, info.data, chunks)
    one_shot = []
    streamed = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        want = info.function(**inputs, reduction="mean")
        middle = time.perf_counter()
        acc = fastloss.Accumulator(name, reduction="mean")
        for part in parts:
            acc.update(**part)
        got = acc.compute()
        end = time.perf_counter()
        if r:  # the first round compiles
            one_shot.append(middle - start)
            streamed.append(end - middle)
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), (name, got, want)
    ratios = [s / o for s, o in zip(streamed, one_shot, strict=True)]
    return {
        "loss": name,
        "n": n,
        "chunks": chunks,
        "one_shot_ms": median(one_shot) * 1e3,
        "accumulator_ms": median(streamed) * 1e3,
        "ratio": median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--losses", nargs="+", default=["mse_loss", "poisson_nll_loss",
                        "binary_cross_entropy_with_logits", "cross_entropy"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        measure(name, n, chunks, args.rounds)
        for name in args.losses
        for n in args.n
        for chunks in args.chunks
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'loss':<34} {'n':>10} {'chunks':>6} {'one-shot ms':>12} {'acc ms':>9} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['loss']:<34} {row['n']:>10,} {row['chunks']:>6} {row['one_shot_ms']:>12.2f} "
            f"{row['accumulator_ms']:>9.2f} {row['ratio']:>6.3f}"
        )


if __name__ == "__main__":
    main()
