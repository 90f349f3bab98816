#!/usr/bin/env python
"""Two versions of fastloss side by side: each loss's forward+backward, interleaved.

    python asv_bench/interleave.py BEFORE AFTER [--n N] [--dtype float32] [--rounds R]
                                   [--losses ...] [--threads T]

``BEFORE`` and ``AFTER`` are source trees (a ``git worktree`` of an older commit, and the
working tree). Each runs in a worker process of its own, laid out as the wheel lays it out
(``fastloss/`` with ``kernels/`` inside it), in a temporary directory; the two workers take
turns, one timed call each, round after round, so that both see the same machine state. Each
call is a registered loss's forward+backward with ``out=`` (a preallocated gradient) on the
registry's generated inputs; the figure is the median over the rounds, and the ratio is the
ratio of the medians. Each timed call follows a 50 ms pause, so that the other worker's
threads (which spin for a while after their call) have stopped: without it the two workers'
threads shared the cores and per-round ratios scattered from 0.9 to 1.4 where the medians
agreed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

WORKER = r"""
import sys, json, time
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                 and "editable" not in type(f).__module__]
sys.path.insert(0, sys.argv[1])
import numpy as np, numba
numba.set_num_threads(int(sys.argv[4]))
from fastloss.registry import LOSSES
from fastloss import _demo
n, dtype = int(sys.argv[2]), np.dtype(sys.argv[3]).type
prepared = {}
for line in sys.stdin:
    name = line.strip()
    if name not in prepared:
        info = LOSSES[name]
        inputs = info.make_inputs(np.random.default_rng(0), n, dtype)
        grad = np.empty_like(next(iter(inputs.values())))
        options = dict(_demo.OPTIONS.get(name, {}))
        out = grad if name != "gaussian_nll_loss" else (grad, None)
        call = lambda info=info, inputs=inputs, options=options, out=out: info.function(
            **inputs, **options, return_grad=True, out=out)
        call(); call()
        prepared[name] = call
    time.sleep(0.05)  # the other worker's threads stop spinning before this call is timed
    start = time.perf_counter()
    value = prepared[name]()[0]
    elapsed = time.perf_counter() - start
    print(json.dumps([elapsed, float(value)]), flush=True)
"""


def _layout(tree: Path, root: Path) -> Path:
    """``tree`` laid out as the wheel installs it, under ``root``."""
    shutil.copytree(
        tree / "fastloss", root / "fastloss", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(tree / "kernels", root / "fastloss" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--n", type=int, default=20_000_000)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--losses", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workers = {}
        for label, tree in (("before", args.before), ("after", args.after)):
            root = _layout(tree.resolve(), Path(tmp) / label)
            env = dict(os.environ, FASTLOSS_CACHE_DIR=str(Path(tmp) / f"cache-{label}"))
            command = [sys.executable, "-c", WORKER, str(root), str(args.n), args.dtype]
            workers[label] = subprocess.Popen(
                [*command, str(args.threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
        sys.path.insert(0, str(Path(tmp) / "after"))
        from fastloss.registry import LOSSES

        names = args.losses or list(LOSSES)
        print(f"{'loss':<34} {'before ms':>10} {'after ms':>10} {'after/before':>13}")
        results = {}
        for name in names:
            times = {"before": [], "after": []}
            values = {}
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for label in order:
                    worker = workers[label]
                    worker.stdin.write(name + "\n")
                    worker.stdin.flush()
                    elapsed, value = json.loads(worker.stdout.readline())
                    times[label].append(elapsed)
                    values[label] = value
            ratio = median(times["after"]) / median(times["before"])
            results[name] = {k: median(v) for k, v in times.items()} | {"ratio": ratio}
            print(f"{name:<34} {median(times['before']) * 1e3:>10.2f} "
                  f"{median(times['after']) * 1e3:>10.2f} {ratio:>13.3f}", flush=True)  # fmt: skip
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
