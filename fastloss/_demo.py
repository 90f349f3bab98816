"""The built-in default job: score a generated data set with every registered loss.

``python -m fastloss`` generates 10 million float32 predictions and targets, computes every
loss and its gradient in one fused pass, and prints value, time and throughput next to torch's
forward+backward when torch is installed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastloss.registry import LOSSES


def _torch_reference(name: str):
    """torch's forward+backward for ``name`` (Keras-dialect losses as torch expressions)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    expressions = {
        "rmse_loss": lambda x, t: torch.sqrt(F.mse_loss(x, t)),
        "log_cosh_loss": lambda x, t: torch.mean(
            (x - t) + F.softplus(-2.0 * (x - t)) - np.log(2.0)
        ),
        "msle_loss": lambda x, t: torch.mean(
            (torch.log(torch.clamp(x, min=1e-7) + 1) - torch.log(torch.clamp(t, min=1e-7) + 1)) ** 2
        ),
        "mape_loss": lambda x, t: (
            100 * torch.mean(torch.abs((t - x) / torch.clamp(torch.abs(t), min=1e-7)))
        ),
        "sigmoid_focal_loss": lambda x, t: torch.mean(
            0.25
            * t
            * (1 - torch.sigmoid(x)) ** 2
            * F.binary_cross_entropy_with_logits(x, t, reduction="none")
            + 0.75
            * (1 - t)
            * torch.sigmoid(x) ** 2
            * F.binary_cross_entropy_with_logits(x, t, reduction="none")
        ),
        "kl_div": lambda x, t: F.kl_div(x, t, reduction="batchmean"),
        "focal_loss": lambda x, t: torch.mean(
            (1 - torch.exp(-F.cross_entropy(x, t, reduction="none"))) ** 2
            * F.cross_entropy(x, t, reduction="none")
        ),
    }
    loss = expressions.get(name) or getattr(F, name, None)

    def run(inputs: dict) -> tuple[float, float]:
        tensors = [torch.from_numpy(v) for v in inputs.values()]
        x = tensors.pop(0).requires_grad_()
        start = time.perf_counter()
        value = loss(x, *tensors)
        value.backward()
        return float(value.detach()), time.perf_counter() - start

    return run if loss is not None else None


# Options of the default job where a loss's own default does not reduce to one number as torch's
# reference does (torchvision's focal loss defaults to "none"; torch warns on kl_div's "mean").
OPTIONS = {"sigmoid_focal_loss": {"reduction": "mean"}, "kl_div": {"reduction": "batchmean"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastloss", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="predictions (default 1e7)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per loss (median)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    args = parser.parse_args(argv)

    dtype = np.dtype(args.dtype).type
    rng = np.random.default_rng(args.seed)
    print(f"fastloss: {args.n:,} {args.dtype} predictions, {len(LOSSES)} losses", flush=True)
    header = f"{'loss':<32} {'value':>14} {'ms':>8} {'Mpred/s':>9}"
    if not args.no_torch:
        header += f" {'torch value':>14} {'torch ms':>9} {'speed-up':>8}"
    print(header, flush=True)
    for step, (name, info) in enumerate(LOSSES.items(), 1):
        inputs = info.make_inputs(rng, args.n, dtype)
        grad = np.empty_like(next(iter(inputs.values())))
        times = []
        for _ in range(args.repeats + 1):  # the first run compiles or loads from the cache
            start = time.perf_counter()
            value, _ = info.function(
                **inputs,
                **OPTIONS.get(name, {}),
                return_grad=True,
                out=grad if name != "gaussian_nll_loss" else (grad, None),
            )
            times.append(time.perf_counter() - start)
        elapsed = float(np.median(times[1:]))
        line = (
            f"{name:<32} {float(value):>14.7g} {elapsed * 1e3:>8.1f} {args.n / elapsed / 1e6:>9.0f}"
        )
        reference = None if args.no_torch else _torch_reference(name)
        if reference is not None:
            runs = [reference(inputs) for _ in range(args.repeats + 1)][1:]  # 1st: warm-up
            torch_time = float(np.median([r[1] for r in runs]))
            line += f" {runs[0][0]:>14.7g} {torch_time * 1e3:>9.1f} {torch_time / elapsed:>7.1f}x"
        print(f"{line}   [{step}/{len(LOSSES)}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
