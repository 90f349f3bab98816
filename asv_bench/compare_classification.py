#!/usr/bin/env python
"""Classification losses against torch and memory bandwidth, in one process.

    python asv_bench/compare_classification.py [--repeats R] [--threads T] [--json PATH]

float32, forward+backward, each fastloss run interleaved with torch's
(``F.<loss>(x, t).backward()`` on ``torch.from_numpy`` tensors, ``x.grad`` reset to ``None``
outside the timed region) and with a Numba STREAM triad over arrays of the logits' size; the
ratios are medians of the per-round ratios:

- ``cross_entropy`` on 32768 x 1000 and on 2048 x 32000 logits with class-index targets, the
  gradient into a preallocated ``out=`` and into the logits themselves (``out=input``, the
  logits refilled from a copy outside the timed region);
- ``binary_cross_entropy_with_logits`` at N = 2*10**7, when ``fastloss.binary`` exists.

Bytes of a run: logits read once plus gradient written once (8 bytes per float32 element);
the triad moves 12 bytes per element (two reads, one write).

The fused peers, where installed, run in the same rounds on the same arrays: ``torch.compile``
of ``F.cross_entropy`` with its backward (Inductor, compiled before timing) and
``jax.jit(jax.value_and_grad(...))`` of the same cross-entropy (``jax[cpu]``, in the bench
extra; its result waited for with ``block_until_ready``). Their ratios are fastloss's speed-up
over them (``x compile``, ``x jax``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchmarks import common  # noqa: E402


def _time(fn, reset=None) -> float:
    if reset is not None:
        reset()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _compiled_torch(torch, F, xt, tt):
    """``torch.compile``'s forward+backward of the cross-entropy, or None where it cannot
    compile here (no C++ compiler)."""
    try:
        compiled = torch.compile(lambda x, t: F.cross_entropy(x, t))

        def run():
            compiled(xt, tt).backward()

        for _ in range(2):
            xt.grad = None
            run()
        return run
    except Exception as error:  # Inductor needs a working toolchain
        print(f"torch.compile: skipped ({type(error).__name__}: {error})", file=sys.stderr)
        return None


def _jax_runner(x: np.ndarray, target: np.ndarray):
    """``jax.jit(jax.value_and_grad(cross_entropy))`` on the same arrays, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss(logits, labels):
        lse = jax.nn.logsumexp(logits, axis=1)
        picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        return jnp.mean(lse - picked)

    step = jax.jit(jax.value_and_grad(loss))
    xj, tj = jnp.asarray(x), jnp.asarray(target.astype(np.int32))

    def run():
        value, grad = step(xj, tj)
        grad.block_until_ready()

    run()
    run()
    return run


def cross_entropy_case(rows: int, classes: int, rounds: int, torch, F) -> dict:
    import fastloss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, classes), dtype=np.float32)
    target = rng.integers(0, classes, rows)
    grad = np.empty_like(x)
    inplace = x.copy()
    triad_arrays = {"a": x.reshape(-1), "b": grad.reshape(-1)}
    triad = common.triad_runner(triad_arrays)
    xt = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(target)

    def fast():
        fastloss.cross_entropy(x, target, return_grad=True, out=grad)

    def fast_inplace():
        fastloss.cross_entropy(inplace, target, return_grad=True, out=inplace)

    def refill():
        np.copyto(inplace, x)

    def reference():
        loss = F.cross_entropy(xt, tt)
        loss.backward()

    def reset_torch():
        xt.grad = None

    for fn in (fast, fast_inplace, reference):  # compile, warm caches and allocators
        refill()
        reset_torch()
        fn()
    check_loss, check_grad = fastloss.cross_entropy(x, target, return_grad=True)
    reset_torch()
    ref = F.cross_entropy(xt, tt)
    ref.backward()
    loss_err = abs(float(check_loss) - ref.item()) / abs(ref.item())
    grad_err = float(np.max(np.abs(check_grad - xt.grad.numpy())))

    peers = {"compile": _compiled_torch(torch, F, xt, tt), "jax": _jax_runner(x, target)}
    peers = {name: run for name, run in peers.items() if run is not None}
    times = {"fastloss": [], "inplace": [], "torch": [], "triad": [], **{p: [] for p in peers}}
    for _ in range(rounds):
        times["fastloss"].append(_time(fast))
        times["inplace"].append(_time(fast_inplace, refill))
        times["torch"].append(_time(reference, reset_torch))
        for name, run in peers.items():
            times[name].append(_time(run, reset_torch))
        times["triad"].append(_time(triad.run))
    nbytes = 8 * x.size
    tbytes = 12 * x.size
    row = {
        "loss": "cross_entropy",
        "shape": [rows, classes],
        "fastloss_ms": 1e3 * median(times["fastloss"]),
        "inplace_ms": 1e3 * median(times["inplace"]),
        "torch_ms": 1e3 * median(times["torch"]),
        "triad_gbps": tbytes / median(times["triad"]) / 1e9,
        "x_torch": median(t / f for t, f in zip(times["torch"], times["fastloss"], strict=True)),
        "x_torch_inplace": median(
            t / f for t, f in zip(times["torch"], times["inplace"], strict=True)
        ),
        "frac_triad": median(
            (nbytes / f) / (tbytes / t)
            for f, t in zip(times["fastloss"], times["triad"], strict=True)
        ),
        "loss_rel_err": loss_err,
        "grad_max_abs_err": grad_err,
    }
    for name in peers:
        row[f"{name}_ms"] = 1e3 * median(times[name])
        row[f"x_{name}"] = median(
            p / f for p, f in zip(times[name], times["fastloss"], strict=True)
        )
    row["gbps"] = nbytes / row["fastloss_ms"] * 1e-6
    return row


def bce_case(n: int, rounds: int, torch, F) -> dict | None:
    try:
        from fastloss.binary import binary_cross_entropy_with_logits
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    t = (rng.random(n, dtype=np.float32) < 0.5).astype(np.float32)
    grad = np.empty_like(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t)
    triad = common.triad_runner({"a": x, "b": t})

    def fast():
        binary_cross_entropy_with_logits(x, t, return_grad=True, out=grad)

    def reference():
        F.binary_cross_entropy_with_logits(xt, tt).backward()

    def reset_torch():
        xt.grad = None

    fast()
    reset_torch()
    reference()
    times = {"fastloss": [], "torch": [], "triad": []}
    for _ in range(rounds):
        times["fastloss"].append(_time(fast))
        times["torch"].append(_time(reference, reset_torch))
        times["triad"].append(_time(triad.run))
    nbytes = tbytes = 12 * n
    return {
        "loss": "binary_cross_entropy_with_logits",
        "shape": [n],
        "fastloss_ms": 1e3 * median(times["fastloss"]),
        "torch_ms": 1e3 * median(times["torch"]),
        "triad_gbps": tbytes / median(times["triad"]) / 1e9,
        "x_torch": median(t / f for t, f in zip(times["torch"], times["fastloss"], strict=True)),
        "frac_triad": median(
            (nbytes / f) / (tbytes / t)
            for f, t in zip(times["fastloss"], times["triad"], strict=True)
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (15)")
    parser.add_argument("--threads", type=int, default=2, help="torch and Numba threads (2)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    common.warm_up_parallel()
    common.set_threads(args.threads)
    rows = [
        cross_entropy_case(32768, 1000, args.repeats, torch, F),
        cross_entropy_case(2048, 32000, args.repeats, torch, F),
    ]
    bce = bce_case(20_000_000, args.repeats, torch, F)
    if bce is not None:
        rows.append(bce)
    import numba

    print(
        f"float32, {args.repeats} rounds; numba {numba.__version__} "
        f"({numba.threading_layer()}, {args.threads} threads), torch {torch.__version__}; "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{'loss':<34} {'shape':>14} {'fastloss ms':>12} {'in-place ms':>12} {'torch ms':>9} "
        f"{'x torch':>8} {'GB/s':>6} {'% triad':>8}"
    )
    for r in rows:
        inplace = f"{r['inplace_ms']:12.1f}" if "inplace_ms" in r else f"{'':>12}"
        print(
            f"{r['loss']:<34} {'x'.join(map(str, r['shape'])):>14} {r['fastloss_ms']:12.1f} "
            f"{inplace} {r['torch_ms']:9.1f} {r['x_torch']:8.1f} "
            f"{r.get('gbps', float('nan')):6.1f} {100 * r['frac_triad']:7.0f}%"
        )
    for r in rows:
        if "loss_rel_err" in r:
            print(
                f"  {r['loss']} {r['shape']}: loss rel err {r['loss_rel_err']:.1e}, grad max abs "
                f"err {r['grad_max_abs_err']:.1e}, x torch in place {r['x_torch_inplace']:.1f}"
            )
        for name in ("compile", "jax"):
            if f"x_{name}" in r:
                print(
                    f"  {r['loss']} {r['shape']}: {name} {r[f'{name}_ms']:.1f} ms, fastloss "
                    f"x{r[f'x_{name}']:.2f}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
