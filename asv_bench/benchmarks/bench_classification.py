"""Classification losses: fastloss against torch, forward and forward+backward.

``cross_entropy`` over (rows, classes) logits with class-index targets, float32, at the shapes
of ``FASTLOSS_BENCH_CE_SHAPES`` (``rowsxclasses``, comma-separated; default 1024x1000 and
2048x32000), the gradient into a preallocated ``out=`` or into the logits themselves
(``inplace``); ``binary_cross_entropy_with_logits`` at the sizes of ``FASTLOSS_BENCH_SIZES``.
torch's backward allocates its gradient (``.grad`` reset to ``None`` in the timed call).
"""

import os

import numpy as np

SHAPES = tuple(
    tuple(int(v) for v in shape.split("x"))
    for shape in os.environ.get("FASTLOSS_BENCH_CE_SHAPES", "1024x1000,2048x32000").split(",")
)
SIZES = tuple(
    int(float(s)) for s in os.environ.get("FASTLOSS_BENCH_SIZES", "1e3,1e5,1e7").split(",")
)


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class CrossEntropy:
    """``cross_entropy`` forward+backward over class-index targets."""

    params = ([f"{r}x{c}" for r, c in SHAPES], ("fastloss", "inplace", "torch"))
    param_names = ("shape", "implementation")
    timeout = 600
    rounds = 7

    def setup(self, shape, impl):
        rows, classes = (int(v) for v in shape.split("x"))
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((rows, classes), dtype=np.float32)
        self.target = rng.integers(0, classes, rows)
        self.grad = np.empty_like(self.x)
        if impl == "torch":
            import torch
            import torch.nn.functional as F

            torch.set_num_threads(_threads())
            self.F = F
            self.xt = torch.from_numpy(self.x).requires_grad_(True)
            self.tt = torch.from_numpy(self.target)
        else:
            import fastloss

            self.loss = fastloss.cross_entropy
            self.loss(self.x, self.target, return_grad=True, out=self.grad)  # compile

    def time_forward_backward(self, shape, impl):
        if impl == "torch":
            self.xt.grad = None
            self.F.cross_entropy(self.xt, self.tt).backward()
        elif impl == "inplace":
            # the gradient overwrites the logits: later rounds see gradients as logits, which
            # costs the same arithmetic
            self.loss(self.grad, self.target, return_grad=True, out=self.grad)
        else:
            self.loss(self.x, self.target, return_grad=True, out=self.grad)

    def peakmem_forward_backward(self, shape, impl):
        self.time_forward_backward(shape, impl)


class BinaryCrossEntropyWithLogits:
    """``binary_cross_entropy_with_logits`` forward+backward."""

    params = (SIZES, ("fastloss", "torch"))
    param_names = ("size", "implementation")
    timeout = 600

    def setup(self, size, impl):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(size, dtype=np.float32)
        self.t = (rng.random(size, dtype=np.float32) < 0.5).astype(np.float32)
        self.grad = np.empty_like(self.x)
        if impl == "torch":
            import torch
            import torch.nn.functional as F

            torch.set_num_threads(_threads())
            self.F = F
            self.xt = torch.from_numpy(self.x).requires_grad_(True)
            self.tt = torch.from_numpy(self.t)
        else:
            import fastloss

            self.loss = fastloss.binary_cross_entropy_with_logits
            self.loss(self.x, self.t, return_grad=True, out=self.grad)

    def time_forward_backward(self, size, impl):
        if impl == "torch":
            self.xt.grad = None
            self.F.binary_cross_entropy_with_logits(self.xt, self.tt).backward()
        else:
            self.loss(self.x, self.t, return_grad=True, out=self.grad)
