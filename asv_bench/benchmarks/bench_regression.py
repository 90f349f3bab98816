"""Elementwise losses: fastloss against torch and NumPy, forward and forward+backward.

Parameters: loss (every entry of ``common.LOSSES``: the registered losses whose rows name the
domains of their data arrays, the regression and margin families), size, dtype and
implementation; a missing baseline raises ``NotImplementedError`` in ``setup`` (asv shows it as
skipped).
Sizes come from ``FASTLOSS_BENCH_SIZES`` and a subset of the losses from
``FASTLOSS_BENCH_LOSSES`` (comma-separated) when set, for quick runs::

    cd asv_bench && FASTLOSS_BENCH_SIZES=100000 FASTLOSS_BENCH_LOSSES=mse_loss,poisson_nll_loss \
        asv run --quick --python=same -E existing

The inputs are written once by ``setup_cache`` (``.npy`` files in asv's cache directory) and
loaded in ``setup``; ``setup`` ends by resetting the process's peak RSS, so ``peakmem_`` counts
the resident inputs plus what the call itself adds. fastloss's backward writes into a
preallocated ``out=``; torch's allocates its gradient (``.grad`` is set to ``None`` inside the
timed call, as ``zero_grad(set_to_none=True)`` would before it); NumPy's is the straightforward
expression.
"""

import os

import numpy as np

from . import common

SIZES = tuple(
    int(float(s)) for s in os.environ.get("FASTLOSS_BENCH_SIZES", "1e3,1e5,1e7").split(",")
)
# A subset of common.LOSS_NAMES (comma-separated) for quick runs; all of them by default.
LOSSES = tuple(
    name
    for name in os.environ.get("FASTLOSS_BENCH_LOSSES", ",".join(common.LOSS_NAMES)).split(",")
    if name
)
_unknown = set(LOSSES) - set(common.LOSS_NAMES)
if _unknown:
    raise ValueError(f"FASTLOSS_BENCH_LOSSES: unknown losses {sorted(_unknown)}")


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Inputs:
    """Base arrays for every (size, dtype), written once to ``.npy`` files."""

    def setup_cache(self):
        paths = {}
        for size in SIZES:
            for dtype in common.DTYPES:
                arrays = common.make_base_arrays(size, dtype)
                for key, array in arrays.items():
                    path = f"base-{size}-{dtype}-{key}.npy"
                    np.save(path, array)
                    paths[(size, dtype, key)] = os.path.abspath(path)
        return paths

    def load(self, paths, size, dtype, keys):
        return {key: np.load(paths[(size, dtype, key)]) for key in keys}


def _prepare_threads(impl: str) -> None:
    threads = _threads()
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)


class Regression(_Inputs):
    """Forward and fused forward+backward of each loss."""

    params = (LOSSES, SIZES, common.DTYPES, common.IMPLEMENTATIONS)
    param_names = ("loss", "size", "dtype", "implementation")
    timeout = 600
    rounds = 9

    def setup(self, paths, loss, size, dtype, impl):
        case = common.BY_NAME[loss]
        if impl == "numpy" and case.numpy_forward_backward is None:
            raise NotImplementedError(f"no NumPy baseline for {loss}")
        if impl == "torch" and case.torch is None:
            raise NotImplementedError(f"no torch baseline for {loss}")
        _prepare_threads(impl)
        keys = set(case.arrays) | {"a", "b"}  # a and b: the triad's operands
        arrays = self.load(paths, size, dtype, keys)
        self.case = case
        self.arrays = arrays
        self.nbytes = case.bytes_per_element() * size * np.dtype(dtype).itemsize
        self.forward = common.prepare(case, impl, "forward", arrays)
        self.forward_backward = common.prepare(case, impl, "forward_backward", arrays)
        # Compile or load the kernels, touch every buffer.
        self.forward.run()
        self.forward_backward.run_reset()
        self.forward_backward.run_reset()
        common.reset_peak_rss()

    def time_forward(self, *params):
        self.forward.run()

    def time_forward_backward(self, *params):
        self.forward_backward.run_reset()

    def peakmem_forward_backward(self, *params):
        self.forward_backward.run_reset()

    def _samples(self):
        """Interleaved (call, triad) samples in seconds per call, the triad over base arrays
        ``a`` and ``b`` of the same size and dtype."""
        common.warm_up_parallel(str(self.arrays["a"].dtype))
        triad = common.triad_runner(self.arrays)
        triad.run()
        runners = {"call": self.forward_backward, "triad": triad}
        number = {name: common.calls_for(runner) for name, runner in runners.items()}
        return common.interleaved(runners, self.rounds, number, warm=True), self.arrays["a"].size

    def track_bandwidth(self, *params):
        """Effective bandwidth of forward+backward: arrays read + gradients written."""
        times, _ = self._samples()
        return float(self.nbytes / np.median(times["call"]) / 1e9)

    track_bandwidth.unit = "GB/s"

    def track_fraction_of_triad(self, *params):
        """Effective bandwidth over the Numba triad's, median of interleaved pairs."""
        times, n = self._samples()
        tbytes = common.triad_bytes(n, self.arrays["a"].dtype.itemsize)
        return float(
            np.median(
                [
                    (self.nbytes / c) / (tbytes / t)
                    for c, t in zip(times["call"], times["triad"], strict=True)
                ]
            )
        )

    track_fraction_of_triad.unit = "fraction of triad"

    def track_extra_memory(self, *params):
        """Memory one forward+backward adds: the larger of its peak RSS beyond the RSS before
        it (``VmHWM`` delta: native allocations, once touched) and ``tracemalloc``'s peak
        (allocations through Python's and NumPy's hooks)."""
        import tracemalloc

        self.forward_backward.reset()
        tracemalloc.start()
        traced = tracemalloc.get_traced_memory()[0]
        before = common.rss_bytes()
        if not common.reset_peak_rss():
            raise NotImplementedError("needs /proc/self/clear_refs (Linux)")
        result = self.forward_backward.run()
        extra = common.peak_rss_bytes() - before
        traced = tracemalloc.get_traced_memory()[1] - traced
        tracemalloc.stop()
        del result
        return max(extra, traced)

    track_extra_memory.unit = "bytes"


class SmallCall:
    """Per-call overhead on 3 float64 elements (fastloss's Python path against NumPy's)."""

    params = (LOSSES, ("fastloss", "numpy"))
    param_names = ("loss", "implementation")

    def setup(self, loss, impl):
        case = common.BY_NAME[loss]
        if impl == "numpy" and case.numpy_forward is None:
            raise NotImplementedError(f"no NumPy baseline for {loss}")
        arrays = {
            "a": np.array([0.5, 1.0, 2.0]),
            "b": np.array([1.0, 1.0, 1.5]),
            "u": np.array([0.7, 1.0, 2.5]),
            "c": np.array([0.0, 1.0, 3.0]),
            "s": np.array([1.0, -1.0, 1.0]),
        }
        self.forward = common.prepare(case, impl, "forward", arrays).run
        self.forward()

    def time_forward(self, loss, impl):
        self.forward()


class Triad:
    """The machine's reference: the STREAM triad as a Numba ``prange`` kernel."""

    params = (SIZES, common.DTYPES)
    param_names = ("size", "dtype")

    def setup(self, size, dtype):
        common.warm_up_parallel(dtype)  # fastloss chooses the threading layer first
        arrays = common.make_base_arrays(size, dtype, keys=("a", "b"))
        self.triad = common.triad_runner(arrays)
        self.triad.run()
        self.nbytes = common.triad_bytes(size, np.dtype(dtype).itemsize)

    def time_triad(self, size, dtype):
        self.triad.run()

    def track_bandwidth(self, size, dtype):
        number = common.calls_for(self.triad)
        samples = [common.seconds_per_call(self.triad, number) for _ in range(9)]
        return self.nbytes / float(np.median(samples)) / 1e9

    track_bandwidth.unit = "GB/s"


class Import:
    """``import fastloss`` in a fresh interpreter (compiles nothing, imports no Numba)."""

    def timeraw_import_fastloss(self):
        return "import fastloss"
