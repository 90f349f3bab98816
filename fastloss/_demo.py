"""The built-in default job: score a generated data set with every registered loss.

``python -m fastloss`` generates 10 million float32 predictions and targets, computes every
loss and its gradient in one fused pass, and prints value, time and throughput next to torch's
forward+backward when torch is installed. The losses, their inputs (``make_inputs``), options
(``job``) and torch counterparts (``reference``) are read from the registry.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastloss.registry import LOSSES


# torch expressions of the losses torch has no function for (the Keras-semantics ones, the
# multi-class focal loss) and of torchvision's sigmoid focal loss (torchvision not needed), each
# computing the value the loss's default-job options give; tensors in the order of ``data``.
def _expressions(torch, F) -> dict:
    def sigmoid_focal(x, t):
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p = torch.sigmoid(x)
        return torch.mean(0.25 * t * (1 - p) ** 2 * ce + 0.75 * (1 - t) * p**2 * ce)

    def focal(x, t):
        ce = F.cross_entropy(x, t, reduction="none")
        return torch.mean((1 - torch.exp(-ce)) ** 2 * ce)

    def msle(x, t):
        r = torch.log(torch.clamp(x, min=1e-7) + 1) - torch.log(torch.clamp(t, min=1e-7) + 1)
        return torch.mean(r * r)

    return {
        "rmse_loss": lambda x, t: torch.sqrt(F.mse_loss(x, t)),
        # Keras's LogCosh form: d + softplus(-2 d) - log 2 (no overflow)
        "log_cosh_loss": lambda x, t: torch.mean(
            (x - t) + F.softplus(-2.0 * (x - t)) - np.log(2.0)
        ),
        "msle_loss": msle,
        "mape_loss": lambda x, t: (
            100 * torch.mean(torch.abs((t - x) / torch.clamp(torch.abs(t), min=1e-7)))
        ),
        "sigmoid_focal_loss": sigmoid_focal,
        "focal_loss": focal,
    }


EXPRESSIONS = {
    "rmse_loss",
    "log_cosh_loss",
    "msle_loss",
    "mape_loss",
    "sigmoid_focal_loss",
    "focal_loss",
}
TORCH_FUNCTIONS = "torch.nn.functional."


def torch_function(name: str):
    """torch's forward of the registered loss ``name`` on tensors (its data arrays in order),
    with the default job's options: the registry's ``torch.nn.functional`` reference, or a
    torch expression of the loss; ``None`` where torch has neither. torch is imported on the
    first call, not here."""
    info = LOSSES[name]
    if name in EXPRESSIONS:

        def expression(*tensors):
            import torch
            import torch.nn.functional as F

            return _expressions(torch, F)[name](*tensors)

        return expression
    if info.reference.startswith(TORCH_FUNCTIONS) and info.dialect == "torch":
        function = info.reference[len(TORCH_FUNCTIONS) :]

        def call(*tensors):
            import torch.nn.functional as F

            return getattr(F, function)(*tensors, **info.job)

        return call
    return None


def _torch_reference(name: str):
    """torch's forward+backward for ``name``: ``run(inputs) -> (value, seconds)``, or None
    without torch or a torch counterpart."""
    try:
        import torch
    except ImportError:
        return None
    loss = torch_function(name)

    def run(inputs: dict) -> tuple[float, float]:
        tensors = [torch.from_numpy(v) for v in inputs.values()]
        x = tensors.pop(0).requires_grad_()
        start = time.perf_counter()
        value = loss(x, *tensors)
        value.backward()
        return float(value.detach()), time.perf_counter() - start

    return run if loss is not None else None


# Options of the default job where a loss's own default does not reduce to one number as its
# reference does (the registry rows' ``job``).
OPTIONS = {name: dict(info.job) for name, info in LOSSES.items() if info.job}


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
                **info.job,
                return_grad=True,
                # the first gradient into ``grad``, the others (gaussian's var) allocated
                out=grad if len(info.grads) == 1 else (grad,) + (None,) * (len(info.grads) - 1),
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
