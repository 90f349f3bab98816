#!/usr/bin/env python
"""fastloss against memory bandwidth, torch and NumPy, in one process.

    python asv_bench/compare.py [--n N] [--dtype float32] [--repeats R] [--losses ...]
                                [--threads T] [--json PATH] [--no-mem] [--small]

Default mode (N = 2*10**7, float32): for each loss, forward+backward with ``out=`` (a
preallocated, prefaulted gradient), each fastloss run interleaved with one run of every
reference (the order rotating from round to round):

- ``triad``: the STREAM triad ``a[i] = b[i] + s*c[i]`` as a Numba ``prange`` kernel, 12N bytes
  for float32 (3 arrays; write-allocate traffic not counted, as for the losses). A loss's
  effective bandwidth counts its arrays read plus its gradients written once (12N for the
  two-array losses) and is given as a fraction of the triad's;
- ``torch``: ``loss = F.<loss>(x, t); loss.backward()`` on ``torch.from_numpy`` tensors with
  ``torch.set_num_threads(T)``. ``x.grad`` is set to ``None`` before every run, outside the
  timed region, so torch allocates its gradient as it does after
  ``zero_grad(set_to_none=True)``; the graph and the loss are freed after the timed region;
- ``numpy``: the straightforward NumPy forward+backward (mse, l1, huber, log_cosh, poisson).

Ratios are medians of the per-round ratios (torch_time / fastloss_time; loss GB/s / triad GB/s).
Then, in a fresh subprocess per (loss, implementation), the peak memory of one
forward+backward beyond the inputs: the kernel's RSS high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the RSS before the call, which sees native allocations (Numba
NRT, torch's allocator, glibc mmap) as soon as they are touched (the probe runs with glibc's
mmap threshold fixed at 64 KiB, so freed pages are not silently reused); ``tracemalloc``'s peak
is reported beside it (it sees only allocations made through Python's and NumPy's hooks, touched
or not). The extra memory of a call is the larger of the two.

``--small``: the cost of a call on 3 float64 elements against the NumPy one-liner, the import
time of fastloss, and the first call's time with a cold and with a warm kernel cache, each in
fresh subprocesses.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median, quantiles

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchmarks import common  # noqa: E402

MiB = 1 << 20

# (loss, metric, threshold): the project's targets at N = 2e7 float32.
TARGETS = (
    ("mse_loss", "frac_triad", 0.90),
    ("l1_loss", "frac_triad", 0.90),
    ("huber_loss", "frac_triad", 0.90),
    ("mse_loss", "x_torch", 2.5),
    ("l1_loss", "x_torch", 5.0),
    ("huber_loss", "x_torch", 5.0),
    ("log_cosh_loss", "frac_triad", 0.50),
    ("poisson_nll_loss", "frac_triad", 0.50),
    ("poisson_nll_loss", "x_torch", 5.0),
)
SMALL_TARGET = 2.0
MEMORY_LIMIT = MiB


# --- machine and versions -------------------------------------------------------------------
def machine_info(threads: int) -> dict:
    import numba
    import numpy as np

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "threads": threads,
        "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
        "numba_threads_in_use": numba.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:
        info["threading_layer"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        import fastloss

        info["fastloss"] = fastloss.__version__
        from fastloss.kernels import _cache

        # The kernel directory is named for the hash of the kernel sources.
        info["kernel_dir"] = str(_cache.directory())
    except (ImportError, AttributeError, OSError):
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
        info["cpu"] = m.group(1).strip() if m else platform.processor()
    except (OSError, subprocess.CalledProcessError):
        info["cpu"] = platform.processor()
    return info


# --- correctness of what is compared ----------------------------------------------------------
def check_against_torch(loss: common.Loss, arrays: dict, fast_result) -> dict:
    """Relative error of fastloss's loss and gradients against torch's (same inputs)."""
    import numpy as np

    runner = common.prepare(loss, "torch", "forward_backward", arrays)
    value = runner.run_reset()
    ref_value = float(value.detach().double())
    ref_grads = [leaf.grad.numpy() for leaf in runner.leaves]
    runner.reset()
    fast_value, fast_grads = fast_result
    if not isinstance(fast_grads, tuple):
        fast_grads = (fast_grads,)
    grad_err = 0.0
    for g, r in zip(fast_grads, ref_grads, strict=True):
        scale = float(np.max(np.abs(r))) or 1.0
        grad_err = max(grad_err, float(np.max(np.abs(g.astype(np.float64) - r))) / scale)
    return {
        "loss_rel_err": abs(float(fast_value) - ref_value) / (abs(ref_value) or 1.0),
        "grad_rel_err": grad_err,
    }


# --- default mode -----------------------------------------------------------------------------
def quartiles(values) -> tuple[float, float]:
    q = quantiles(values, n=4)
    return q[0], q[2]


def measure_loss(loss: common.Loss, arrays: dict, triad, args) -> dict:
    n = args.n
    itemsize = arrays["a"].dtype.itemsize
    runners = {
        "fastloss": common.prepare(loss, "fastloss", "forward_backward", arrays),
        "triad": triad,
        "torch": common.prepare(loss, "torch", "forward_backward", arrays),
    }
    try:
        runners["numpy"] = common.prepare(loss, "numpy", "forward_backward", arrays)
    except NotImplementedError:
        pass
    t0 = time.perf_counter()
    first = runners["fastloss"].run()  # compiles (or loads from the cache)
    first_call = time.perf_counter() - t0
    check = check_against_torch(loss, arrays, first)
    del first
    for runner in runners.values():  # warm: page-in, allocator state
        common.seconds_per_call(runner)
        common.seconds_per_call(runner)
    gc.collect()
    gc.disable()
    try:
        times = common.interleaved(runners, args.repeats)
    finally:
        gc.enable()
    fast = times["fastloss"]
    nbytes = loss.bytes_per_element() * n * itemsize
    tbytes = common.triad_bytes(n, itemsize)
    frac = [(nbytes / f) / (tbytes / t) for f, t in zip(fast, times["triad"], strict=True)]
    row = {
        "loss": loss.name,
        "bytes": nbytes,
        "first_call_s": first_call,
        "fastloss_ms": 1e3 * median(fast),
        "triad_ms": 1e3 * median(times["triad"]),
        "triad_gbps": tbytes / median(times["triad"]) / 1e9,
        "gbps": nbytes / median(fast) / 1e9,
        "frac_triad": median(frac),
        "frac_triad_iqr": quartiles(frac),
        "torch_ms": 1e3 * median(times["torch"]),
        "x_torch": common.pair_median(times["torch"], fast),
        "x_torch_iqr": quartiles([t / f for t, f in zip(times["torch"], fast, strict=True)]),
        "numpy_ms": None,
        "x_numpy": None,
        "check": check,
        "times_s": times,
    }
    if "numpy" in times:
        row["numpy_ms"] = 1e3 * median(times["numpy"])
        row["x_numpy"] = common.pair_median(times["numpy"], fast)
    return row


def memory_probe(args) -> None:
    """Subprocess body: peak memory of one forward+backward beyond the inputs; prints JSON."""
    import tracemalloc

    loss = common.BY_NAME[args.memprobe]
    if args.impl == "torch":
        import torch

        torch.set_num_threads(args.threads)
    arrays = common.make_base_arrays(args.n, args.dtype, keys=loss.arrays)
    runner = common.prepare(loss, args.impl, "forward_backward", arrays)
    runner.run_reset()  # compile or load kernels, touch every buffer
    runner.run_reset()
    runner.reset()
    gc.collect()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    rss0 = common.rss_bytes()
    faults0 = common.minor_faults()
    hwm_reset = common.reset_peak_rss()
    result = runner.run()
    hwm = common.peak_rss_bytes()
    faults = common.minor_faults() - faults0
    traced_peak = tracemalloc.get_traced_memory()[1] - traced0
    del result
    print(
        json.dumps(
            {
                "loss": loss.name,
                "impl": args.impl,
                "rss_before": rss0,
                "extra_peak_rss": hwm - rss0 if hwm_reset else None,
                "tracemalloc_peak": traced_peak,
                "extra": max(hwm - rss0 if hwm_reset else 0, traced_peak),
                "minor_faults": faults,
            }
        )
    )


# glibc serves every allocation of 64 KiB or more by a fresh mmap and trims freed memory at
# once, so a native allocation shows in the RSS high-water mark when touched instead of reusing
# pages that an earlier call left resident.
MEMPROBE_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")


def run_memory_probes(args, losses) -> list[dict]:
    rows = []
    impls = ("fastloss", "torch", "numpy") if args.mem_baselines else ("fastloss",)
    for name in losses:
        for impl in impls:
            if impl == "numpy" and common.BY_NAME[name].numpy_forward_backward is None:
                continue
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--memprobe",
                name,
                "--impl",
                impl,
                "--n",
                str(args.n),
                "--dtype",
                args.dtype,
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=MEMPROBE_ENV)
            if proc.returncode != 0:
                print(f"memory probe {name}/{impl} failed:\n{proc.stderr}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'loss':<18} {'fastloss ms':>11} {'torch ms':>9} {'numpy ms':>9} {'GB/s':>6} "
        f"{'% triad':>8} {'x torch':>8} {'x numpy':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['loss']:<18} {r['fastloss_ms']:>11.2f} {r['torch_ms']:>9.1f} "
            f"{fmt(r['numpy_ms'], '9.1f'):>9} {r['gbps']:>6.1f} "
            f"{100 * r['frac_triad']:>7.0f}% {r['x_torch']:>8.1f} {fmt(r['x_numpy'], '8.1f'):>8}"
        )


def evaluate_targets(rows: list[dict], mem_rows: list[dict]) -> list[dict]:
    by = {r["loss"]: r for r in rows}
    verdicts = []
    for name, metric, threshold in TARGETS:
        if name not in by:
            continue
        value = by[name][metric]
        verdicts.append(
            {
                "target": f"{name} {metric} >= {threshold:g}",
                "value": value,
                "met": value >= threshold,
            }
        )
    for m in mem_rows:
        if m["impl"] == "fastloss":
            verdicts.append(
                {
                    "target": f"{m['loss']} extra memory with out= < 1 MiB (bytes)",
                    "value": m["extra"],
                    "met": m["extra"] < MEMORY_LIMIT,
                }
            )
    return verdicts


def default_mode(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    common.warm_up_parallel(args.dtype)  # fastloss picks the threading layer first
    common.set_threads(args.threads)
    info = machine_info(args.threads)
    print(
        f"N = {args.n:,} {args.dtype}, {args.repeats} rounds; numba {info['numba']} "
        f"({info['threading_layer']}, {info['numba_threads_in_use']} threads), torch "
        f"{info['torch']} ({info['torch_threads']} threads), numpy {info['numpy']}; "
        f"{info['cpu']}, {info['cpu_count']} CPUs",
        flush=True,
    )
    arrays = common.make_base_arrays(args.n, args.dtype)
    triad = common.triad_runner(arrays)
    for _ in range(3):
        common.seconds_per_call(triad)
    rows = []
    for name in args.losses:
        row = measure_loss(common.BY_NAME[name], arrays, triad, args)
        rows.append(row)
        print(
            f"  {name}: {row['fastloss_ms']:.2f} ms, {100 * row['frac_triad']:.0f}% of triad "
            f"({row['triad_gbps']:.1f} GB/s), x{row['x_torch']:.1f} torch; first call "
            f"{row['first_call_s']:.2f} s; vs torch: loss rel err "
            f"{row['check']['loss_rel_err']:.1e}, grad {row['check']['grad_rel_err']:.1e}",
            flush=True,
        )
    del arrays, triad
    gc.collect()
    mem_rows = run_memory_probes(args, args.losses) if args.mem else []

    print()
    print_table(rows)
    triads = [r["triad_gbps"] for r in rows]
    print(
        f"\ntriad (Numba prange, 12N bytes): median {median(triads):.1f} GB/s "
        f"(per-loss medians {min(triads):.1f}-{max(triads):.1f}); bytes per loss: arrays read "
        "+ gradients written (12N; gaussian_nll 20N)"
    )
    if mem_rows:
        print("\npeak memory of one forward+backward beyond inputs (fresh subprocess, warm):")
        print(f"{'loss':<18} {'impl':<9} {'VmHWM delta':>12} {'tracemalloc':>12} {'faults':>7}")
        for m in mem_rows:
            hwm = m["extra_peak_rss"]
            print(
                f"{m['loss']:<18} {m['impl']:<9} "
                f"{fmt(None if hwm is None else hwm / MiB, '10.2f'):>10} MiB "
                f"{m['tracemalloc_peak'] / MiB:>8.2f} MiB {m['minor_faults']:>7}"
            )
    verdicts = evaluate_targets(rows, mem_rows)
    print("\ntargets:")
    for v in verdicts:
        print(f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['value']:.3g}")
    return {
        "machine": info,
        "n": args.n,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "rows": rows,
        "memory": mem_rows,
        "targets": verdicts,
    }


# --- small mode -------------------------------------------------------------------------------
IMPORT_SNIPPET = """\
import sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
print(t1 - t0, 'numba' in sys.modules, 'torch' in sys.modules)
"""

FIRST_CALL_SNIPPET = """\
import json, time
t0 = time.perf_counter()
import numpy as np
import fastloss
t1 = time.perf_counter()
p = np.array([0.5, 1.0, 2.0]); t = np.array([1.0, 1.0, 1.5])
fastloss.mse_loss(p, t)
t2 = time.perf_counter()
fastloss.mse_loss(p, t)
t3 = time.perf_counter()
x = np.ones(1 << 21, np.float32); g = np.empty_like(x)
fastloss.mse_loss(x, x, return_grad=True, out=g)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_small_s": t2 - t1, "second_small_s": t3 - t2,
                  "first_parallel_grad_s": t4 - t3}))
"""


def _python(code: str, env: dict | None = None, flags: tuple = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )


def import_times(repeats: int) -> dict:
    out = {}
    for module in ("numpy", "fastloss"):
        values = []
        for _ in range(repeats):
            fields = _python(IMPORT_SNIPPET.format(module=module)).stdout.split()
            values.append(float(fields[0]))
            if module == "fastloss":
                out["imports_numba"] = fields[1] == "True"
                out["imports_torch"] = fields[2] == "True"
        out[f"{module}_s"] = median(values)
    # -X importtime: cumulative microseconds of the top-level fastloss import.
    err = _python("import fastloss", flags=("-X", "importtime")).stderr
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "fastloss":
            out["importtime_cumulative_s"] = int(parts[1]) / 1e6
    return out


def first_call_times(warm_runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fastloss-bench-") as tmp:
        env = dict(os.environ)
        env["FASTLOSS_CACHE_DIR"] = os.path.join(tmp, "fastloss")
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
        cold = json.loads(_python(FIRST_CALL_SNIPPET, env=env).stdout.strip().splitlines()[-1])
        warm = [
            json.loads(_python(FIRST_CALL_SNIPPET, env=env).stdout.strip().splitlines()[-1])
            for _ in range(warm_runs)
        ]
    warm_median = {k: median(w[k] for w in warm) for k in warm[0]}
    return {"cold": cold, "warm": warm_median}


def per_call(fn, number: int, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return samples


def small_mode(args) -> dict:
    import numpy as np

    import fastloss

    print("import time and first calls (fresh subprocesses)...", flush=True)
    imports = import_times(args.import_repeats)
    first = first_call_times(args.import_repeats)

    p = np.array([0.5, 1.0, 2.0])
    t = np.array([1.0, 1.0, 1.5])
    number, rounds = 2000, max(args.repeats, 15)
    rows = []
    arrays = {
        "a": p,
        "b": t,
        "u": np.array([0.7, 1.0, 2.5]),
        "c": np.array([0.0, 1.0, 3.0]),
        "s": np.array([1.0, -1.0, 1.0]),
    }
    for name in args.losses:
        loss = common.BY_NAME[name]
        fast_f = common.prepare(loss, "fastloss", "forward", arrays).run
        fn = getattr(fastloss, name)
        fargs = [arrays[k] for k in loss.arrays]

        def fast_fb(fn=fn, fargs=fargs, kwargs=loss.kwargs):
            return fn(*fargs, **kwargs, return_grad=True)

        fast_f()
        fast_fb()
        if name == "mse_loss":
            ref_f = lambda: np.mean((p - t) ** 2)  # noqa: E731 - the NumPy one-liner
        elif loss.numpy_forward is not None:
            ref_f = common.prepare(loss, "numpy", "forward", arrays).run
        else:
            ref_f = None
        ref_fb = (
            common.prepare(loss, "numpy", "forward_backward", arrays).run
            if loss.numpy_forward_backward is not None
            else None
        )
        samples = {"f": [], "fb": [], "rf": [], "rfb": []}
        for _ in range(rounds):  # interleaved, one block of `number` calls each
            samples["f"] += per_call(fast_f, number, 1)
            samples["fb"] += per_call(fast_fb, number, 1)
            if ref_f is not None:
                samples["rf"] += per_call(ref_f, number, 1)
            if ref_fb is not None:
                samples["rfb"] += per_call(ref_fb, number, 1)
        row = {
            "loss": name,
            "forward_us": 1e6 * median(samples["f"]),
            "forward_backward_us": 1e6 * median(samples["fb"]),
            "numpy_forward_us": 1e6 * median(samples["rf"]) if samples["rf"] else None,
            "numpy_forward_backward_us": 1e6 * median(samples["rfb"]) if samples["rfb"] else None,
            "ratio_forward": (
                common.pair_median(samples["f"], samples["rf"]) if samples["rf"] else None
            ),
        }
        rows.append(row)

    print(f"\ncall on 3 float64 elements (median of {rounds} blocks of {number} calls):")
    print(
        f"{'loss':<18} {'fwd us':>7} {'numpy us':>9} {'ratio':>6} {'fwd+bwd us':>11} "
        f"{'numpy us':>9}"
    )
    for r in rows:
        print(
            f"{r['loss']:<18} {r['forward_us']:>7.2f} {fmt(r['numpy_forward_us'], '9.2f'):>9} "
            f"{fmt(r['ratio_forward'], '6.2f'):>6} {r['forward_backward_us']:>11.2f} "
            f"{fmt(r['numpy_forward_backward_us'], '9.2f'):>9}"
        )
    print(
        f"\nimport numpy: {1e3 * imports['numpy_s']:.0f} ms; import fastloss (numpy included): "
        f"{1e3 * imports['fastloss_s']:.0f} ms (-X importtime cumulative "
        f"{1e3 * imports.get('importtime_cumulative_s', float('nan')):.0f} ms); imports numba: "
        f"{imports['imports_numba']}, torch: {imports['imports_torch']}"
    )
    for label in ("cold", "warm"):
        f = first[label]
        print(
            f"first call, {label} cache: import {1e3 * f['import_s']:.0f} ms, first mse_loss "
            f"(3 float64) {1e3 * f['first_small_s']:.0f} ms, second {1e6 * f['second_small_s']:.0f}"
            f" us, first parallel mse_loss+grad (2^21 float32) "
            f"{1e3 * f['first_parallel_grad_s']:.0f} ms"
        )
    verdicts = []
    mse = next((r for r in rows if r["loss"] == "mse_loss"), None)
    if mse is not None:
        verdicts.append(
            {
                "target": f"mse_loss on 3 float64 <= {SMALL_TARGET:g}x np.mean((p - t) ** 2)",
                "value": mse["ratio_forward"],
                "met": mse["ratio_forward"] <= SMALL_TARGET,
            }
        )
        print("\ntargets:")
        for v in verdicts:
            print(f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['value']:.3g}")
    return {
        "small": rows,
        "imports": imports,
        "first_call": first,
        "targets": verdicts,
        "machine": machine_info(args.threads),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000_000, help="elements (default 2e7)")
    parser.add_argument("--dtype", default="float32", choices=common.DTYPES)
    parser.add_argument("--repeats", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument(
        "--losses",
        nargs="+",
        default=list(common.LOSS_NAMES),
        choices=common.LOSS_NAMES,
        metavar="LOSS",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and Numba threads (2)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--no-mem", dest="mem", action="store_false", help="skip the peak-memory subprocesses"
    )
    parser.add_argument(
        "--no-mem-baselines",
        dest="mem_baselines",
        action="store_false",
        help="peak memory of fastloss only, not of torch and NumPy",
    )
    parser.add_argument(
        "--small", action="store_true", help="small-call overhead, import time, first-call times"
    )
    parser.add_argument(
        "--import-repeats",
        type=int,
        default=5,
        help="subprocesses per import / warm-cache timing (5)",
    )
    parser.add_argument(
        "--fresh-cache",
        action="store_true",
        help="compile into new, empty FASTLOSS_CACHE_DIR and NUMBA_CACHE_DIR (removed at exit)",
    )
    parser.add_argument("--memprobe", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="fastloss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memprobe:
        memory_probe(args)
        return 0
    if args.fresh_cache:
        if "numba" in sys.modules:
            raise RuntimeError("--fresh-cache: Numba was imported before the cache was set")
        root = tempfile.mkdtemp(prefix="fastloss-bench-cache-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        os.environ["FASTLOSS_CACHE_DIR"] = os.path.join(root, "fastloss")
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(root, "numba")
    result = small_mode(args) if args.small else default_mode(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
