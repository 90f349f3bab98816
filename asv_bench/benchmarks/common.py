"""The benchmark cases, in one place: inputs, the fastloss call and its baselines.

Used by the asv suite (``bench_regression.py``) and by ``asv_bench/compare.py``. The losses are
read from the registry (``fastloss/registry.py``): every row that names the domains of its data
arrays is one :class:`Loss` of :data:`LOSSES`, its arrays the shared base arrays of those
domains, its torch forward(+backward) the registry's reference (``fastloss._demo``'s torch
expression where torch has no function of that name) and, where a plain NumPy version is worth
comparing, a NumPy forward(+backward) from :data:`NUMPY`. A new registered loss is benchmarked
without an edit here. :func:`prepare` turns a (loss, implementation, mode) into a
:class:`Runner`; a missing baseline raises ``NotImplementedError`` (asv reports it as skipped).

Nothing here imports Numba or torch at import time.
"""

from __future__ import annotations

import math
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

import numpy as np

IMPLEMENTATIONS = ("fastloss", "torch", "numpy")
DTYPES = ("float32", "float64")


# --- inputs ------------------------------------------------------------------------------------
# Five base arrays per (size, dtype); every loss reads two or three of them, by the registry's
# domains of its data arrays.
#   a, b : standard normal ("real": predictions, targets, log-rates; a first, then b)
#   u    : uniform in [0.5, 3) ("positive": variances, positive predictions, targets away from 0)
#   c    : integer counts 0..4 ("count": Poisson targets)
#   s    : 1 or -1, each with probability 1/2 ("sign": the margin losses' targets)
BASE_ARRAYS = ("a", "b", "u", "c", "s")
DOMAIN_ARRAYS = {"real": ("a", "b"), "positive": ("u",), "count": ("c",), "sign": ("s",)}


def make_base_arrays(n: int, dtype: str, seed: int = 0, keys=BASE_ARRAYS) -> dict:
    """The base arrays, generated in place (no temporaries of the array size)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype).type
    out = {}
    for key in BASE_ARRAYS:
        if key in ("a", "b"):
            x = rng.standard_normal(n, dtype=dt)
        elif key == "s":
            x = rng.random(n, dtype=dt)
            x -= dt(0.5)
            np.copysign(dt(1.0), x, out=x)
        else:
            x = rng.random(n, dtype=dt)
            if key == "u":
                x *= dt(2.5)
                x += dt(0.5)
            else:
                x *= dt(5.0)
                np.floor(x, out=x)
        if key in keys:
            out[key] = x
    return out


# --- the losses --------------------------------------------------------------------------------
def _np_mse_fwd(p, t):
    return np.mean((p - t) ** 2)


def _np_mse(p, t):
    d = p - t
    loss = np.mean(d * d)
    grad = 2 * d / d.size
    return loss, grad


def _np_l1_fwd(p, t):
    return np.mean(np.abs(p - t))


def _np_l1(p, t):
    d = p - t
    loss = np.mean(np.abs(d))
    grad = np.sign(d) / d.size
    return loss, grad


def _np_huber_fwd(p, t, delta=1.0):
    d = p - t
    ad = np.abs(d)
    return np.mean(np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta)))


def _np_huber(p, t, delta=1.0):
    d = p - t
    ad = np.abs(d)
    loss = np.mean(np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta)))
    grad = np.clip(d, -delta, delta) / d.size
    return loss, grad


def _np_log_cosh_fwd(p, t):
    a = np.abs(p - t)
    return np.mean(a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0))


def _np_log_cosh(p, t):
    d = p - t
    a = np.abs(d)
    loss = np.mean(a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0))
    grad = np.tanh(d) / d.size
    return loss, grad


def _np_poisson_fwd(p, t, log_input=True):
    return np.mean(np.exp(p) - t * p)


def _np_poisson(p, t, log_input=True):
    e = np.exp(p)
    loss = np.mean(e - t * p)
    grad = (e - t) / p.size
    return loss, grad


# The NumPy baselines worth comparing: (forward, forward+backward) by loss.
NUMPY = {
    "mse_loss": (_np_mse_fwd, _np_mse),
    "l1_loss": (_np_l1_fwd, _np_l1),
    "huber_loss": (_np_huber_fwd, _np_huber),
    "poisson_nll_loss": (_np_poisson_fwd, _np_poisson),
    "log_cosh_loss": (_np_log_cosh_fwd, _np_log_cosh),
}


@dataclass(frozen=True, eq=False)
class Loss:
    """One benchmarked loss.

    ``arrays`` names the base arrays passed positionally (input, target[, var]); ``grads`` the
    positions whose gradients the backward writes; ``kwargs`` go to fastloss (and are bound
    into ``torch``). ``torch`` maps tensors to the loss tensor, ``None`` where torch has no
    counterpart; ``numpy_forward`` and ``numpy_forward_backward`` (returning ``(loss, grad)``)
    are ``None`` where there is no NumPy baseline.
    """

    name: str
    arrays: tuple[str, ...]
    torch: Callable | None
    numpy_forward: Callable | None = None
    numpy_forward_backward: Callable | None = None
    grads: tuple[int, ...] = (0,)
    kwargs: dict = field(default_factory=dict)

    def bytes_per_element(self) -> int:
        """Arrays read plus gradients written: the minimum traffic of a fused pass."""
        return len(self.arrays) + len(self.grads)


def _base_arrays(name: str, domains: tuple[str, ...]) -> tuple[str, ...]:
    """The base arrays of ``domains``, each domain's arrays taken in turn (input a, target b)."""
    taken: dict[str, int] = {}
    keys = []
    for domain in domains:
        if domain not in DOMAIN_ARRAYS:
            raise ValueError(f"{name}: no base array for the domain {domain!r}")
        choices = DOMAIN_ARRAYS[domain]
        keys.append(choices[taken.get(domain, 0) % len(choices)])
        taken[domain] = taken.get(domain, 0) + 1
    return tuple(keys)


def _registered() -> tuple[Loss, ...]:
    from fastloss import _demo
    from fastloss.registry import LOSSES as REGISTERED

    losses = []
    for name, info in REGISTERED.items():
        if not info.domains:
            continue
        data = info.data[: len(info.domains)]
        numpy_forward, numpy_forward_backward = NUMPY.get(name, (None, None))
        losses.append(
            Loss(
                name,
                _base_arrays(name, info.domains),
                _demo.torch_function(name),
                numpy_forward,
                numpy_forward_backward,
                grads=tuple(data.index(g) for g in info.grads),
                kwargs=dict(info.job),
            )
        )
    return tuple(losses)


LOSSES: tuple[Loss, ...] = _registered()
BY_NAME = {loss.name: loss for loss in LOSSES}
LOSS_NAMES = tuple(BY_NAME)


def _torch():
    import torch

    return torch


# --- runners -----------------------------------------------------------------------------------
@dataclass(eq=False)
class Runner:
    """``run()`` is the measured call; ``reset()`` the untimed preparation before it."""

    run: Callable
    reset: Callable = lambda: None
    label: str = ""
    #: The torch leaves whose ``.grad`` the backward fills (torch runners only).
    leaves: tuple = ()

    def run_reset(self):
        self.reset()
        return self.run()


def prefaulted_like(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    out.fill(0)
    return out


def prepare(loss: Loss, impl: str, mode: str, arrays: dict) -> Runner:
    """A runner for ``loss`` by ``impl`` in ``mode`` ("forward" or "forward_backward").

    ``arrays`` holds (at least) the base arrays ``loss.arrays`` names. fastloss's backward
    writes into preallocated, prefaulted ``out=`` buffers; torch's allocates its gradients
    (``.grad`` is set to ``None`` in ``reset``, as ``zero_grad(set_to_none=True)`` does);
    NumPy's is the straightforward expression and allocates its temporaries.
    """
    if mode not in ("forward", "forward_backward"):
        raise ValueError(f"mode: expected 'forward' or 'forward_backward', got {mode!r}")
    args = [arrays[k] for k in loss.arrays]
    kwargs = dict(loss.kwargs)
    label = f"{loss.name}/{impl}/{mode}"
    if impl == "fastloss":
        import fastloss

        fn = getattr(fastloss, loss.name)
        if mode == "forward":
            return Runner(lambda: fn(*args, **kwargs), label=label)
        outs = tuple(prefaulted_like(args[i]) for i in loss.grads)
        out = outs[0] if len(outs) == 1 else outs
        return Runner(lambda: fn(*args, **kwargs, return_grad=True, out=out), label=label)
    if impl == "torch":
        if loss.torch is None:
            raise NotImplementedError(f"no torch baseline for {loss.name}")
        torch = _torch()
        tensors = [torch.from_numpy(a) for a in args]
        if mode == "forward":
            return Runner(lambda: loss.torch(*tensors), label=label)
        leaves = [tensors[i].requires_grad_() for i in loss.grads]

        def reset():
            for leaf in leaves:
                leaf.grad = None

        def run():
            value = loss.torch(*tensors)
            value.backward()
            return value

        return Runner(run, reset, label=label, leaves=tuple(leaves))
    if impl == "numpy":
        fn = loss.numpy_forward if mode == "forward" else loss.numpy_forward_backward
        if fn is None:
            raise NotImplementedError(f"no NumPy baseline for {loss.name}")
        return Runner(lambda: fn(*args, **kwargs), label=label)
    raise ValueError(f"impl: expected one of {IMPLEMENTATIONS}, got {impl!r}")


# --- the STREAM triad reference ----------------------------------------------------------------
_triad = None


def triad_kernel():
    """``a[i] = b[i] + s * c[i]`` as a Numba ``prange`` loop (compiled on first use).

    Call a parallel fastloss kernel first, so that fastloss picks Numba's threading layer.
    """
    global _triad
    if _triad is None:
        import numba

        @numba.njit(parallel=True, fastmath=True, error_model="numpy", nogil=True)
        def triad(a, b, c, s):
            for i in numba.prange(a.size):
                a[i] = b[i] + s * c[i]

        _triad = triad
    return _triad


def triad_runner(arrays: dict) -> Runner:
    """The triad over base arrays ``a`` and ``b`` into a prefaulted third array."""
    b, c = arrays["a"], arrays["b"]
    a = prefaulted_like(b)
    s = b.dtype.type(0.5)
    kernel = triad_kernel()
    return Runner(lambda: kernel(a, b, c, s), label="triad")


def triad_bytes(n: int, itemsize: int) -> int:
    return 3 * n * itemsize


def warm_up_parallel(dtype: str = "float32") -> None:
    """One parallel fastloss launch (fastloss then chooses and sets up Numba's threading layer)."""
    import fastloss

    n = 1 << 21
    x = np.zeros(n, dtype)
    fastloss.mse_loss(x, x, return_grad=True, out=np.empty_like(x))


def set_threads(threads: int) -> None:
    """Thread counts of torch and of Numba (Numba's after fastloss chose the layer)."""
    import numba

    numba.set_num_threads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# --- timing ------------------------------------------------------------------------------------
def seconds_per_call(runner: Runner, number: int = 1) -> float:
    """Seconds per call of ``runner.run`` (``reset`` untimed when ``number`` is 1)."""
    if number == 1:
        runner.reset()
        t0 = time.perf_counter()
        result = runner.run()
        t1 = time.perf_counter()
        del result
        return t1 - t0
    t0 = time.perf_counter()
    for _ in range(number):
        runner.run_reset()
    return (time.perf_counter() - t0) / number


def calls_for(runner: Runner, seconds: float = 5e-3) -> int:
    """How many calls make a sample of at least ``seconds`` (timed after a warm call)."""
    runner.run_reset()
    t = seconds_per_call(runner)
    return max(1, min(100_000, math.ceil(seconds / max(t, 1e-9))))


def interleaved(runners: dict, rounds: int, number: dict | None = None, warm: bool = False) -> dict:
    """Times of each runner, one sample of each per round, the order rotating every round.

    With ``warm``, one untimed call precedes each sample: a thread pool that went to sleep
    while another library ran (torch's OpenMP threads after a Numba kernel, on a VM: up to
    tens of milliseconds to wake) is awake again when the timed calls start. That matters for
    small inputs only.
    """
    names = list(runners)
    number = number or {}
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if warm:
                runners[name].run_reset()
            times[name].append(seconds_per_call(runners[name], number.get(name, 1)))
    return times


def pair_median(numerators, denominators) -> float:
    """Median of the per-pair ratios ``numerators[i] / denominators[i]``."""
    return median(a / b for a, b in zip(numerators, denominators, strict=True))


# --- memory ------------------------------------------------------------------------------------
def _status(field_name: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(m.group(1)) * 1024


def rss_bytes() -> int:
    """Current resident set size (Linux)."""
    return _status("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss` (Linux ``VmHWM``)."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (``VmHWM``, and ``ru_maxrss`` with it) to the
    current RSS: ``echo 5 > /proc/self/clear_refs`` (Linux >= 4.0). False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
