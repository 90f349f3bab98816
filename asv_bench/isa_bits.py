"""How much fastloss's bits depend on the CPU the kernels are compiled for.

The reduction contract fixes the order of every addition (float64 lanes, a fixed tree), so the
vector width cannot change a reduced loss. What can change is an element's own arithmetic: the
polynomials of ``kernels/vmath.py`` are compiled with ``contract`` (LLVM fuses a multiply and an
add into one FMA where the CPU has one), and the row kernels of the softmax family keep
``reassoc`` inside a row. This script compiles every kernel for several CPU targets, one fresh
process (and a fresh, empty cache directory) per target, evaluates every registered loss on the
same deterministic inputs, and compares each target's bits with the host's.

Targets (``--targets``, comma-separated; the first is the reference; default
``host,haswell,host-nofma,x86-64``)::

    host          no NUMBA_CPU_NAME / NUMBA_CPU_FEATURES: Numba's own choice for this machine
    haswell       NUMBA_CPU_NAME=haswell, NUMBA_CPU_FEATURES="" (LLVM's haswell: AVX2 + FMA)
    haswell:host  NUMBA_CPU_NAME=haswell with the host's feature string: the same instructions
                  as the host, haswell's scheduling model and cost tables (any name of NAMED)
    host-nofma    the host's CPU name and feature string with -fma (AVX2, no FMA)
    nehalem       SSE4.2, no AVX, no FMA (also: core2, x86-64-v2, sandybridge, ...)
    x86-64        the x86-64 baseline: SSE2, no AVX, no FMA

The feature string is always given explicitly: with only ``NUMBA_CPU_NAME`` set, Numba takes the
host's feature string (``numba.core.codegen.JITCPUCodegen._get_host_cpu_features``), so a build
"for x86-64" would still use AVX2 and FMA. An empty ``NUMBA_CPU_FEATURES`` means the named CPU's
own features. Each worker checks its build with ``inspect_asm()`` of every compiled kernel: FMA
instructions (``vfmadd...``) and ymm/zmm registers counted.

Inputs, per loss and dtype (float32, float64), from the registry's ``make_inputs`` with a seed
of the loss's name: ``--n`` elements (default 1e5) for the elementwise losses, ``--rows`` x
``--classes`` (default 2000 x 100) for the row losses (the registry's ``CLASSES`` set to
``--classes`` in the worker). The Keras binary losses, which average over their last axis, get
an ``(n, 1)`` input so that ``reduction="none"`` gives one value per element. Each loss runs with
``return_grad=True`` for ``reduction="none"`` and ``"mean"``.

For each array (the elementwise loss of ``"none"``, its gradient, the gradient of ``"mean"`` and
the ``"mean"`` loss) the table gives the largest difference in ulps of the reference's element
(``np.spacing`` of its value, in the array's dtype), the same difference in ulps of the array's
largest ``|value|`` (an absolute measure: a result near zero that comes from cancellation can
differ by thousands of its own ulps and still by one ulp of its terms), and the fraction of
elements whose bits differ. Only (loss, dtype) pairs with a difference are listed (``--all``:
every pair).

``--commit REV`` measures that commit instead of the working tree: ``git archive`` of
``fastloss/`` and ``kernels/`` into the temporary directory, first on the workers'
``PYTHONPATH`` (the tree can then be edited meanwhile). ``--keep DIR`` keeps each target's
``.npz``/``.json``; ``--load DIR`` compares kept files again without compiling.

Cost: compiling every kernel takes each worker about 80 s of one core (plus about 7 s of
``inspect_asm``); ``--jobs 2`` runs two targets at once (6 targets: about 7 minutes on two
shared cores).

Usage::

    .venv/bin/python asv_bench/isa_bits.py [--commit HEAD] [--targets host,haswell,x86-64]
        [--jobs 2] [--losses a,b] [--keep DIR | --load DIR] [--all] [--json]
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

DEFAULT_TARGETS = ("host", "haswell", "host-nofma", "x86-64")
ROOT = Path(__file__).resolve().parent.parent
# LLVM CPU names accepted as targets (their own feature sets); "<name>:host" takes the host's
# feature string with that CPU's scheduling model and cost tables.
NAMED = {"haswell", "skylake", "znver2", "znver3", "sandybridge", "nehalem", "core2", "x86-64"}
NAMED |= {"x86-64-v2", "x86-64-v3"}
DTYPES = ("float32", "float64")
# Keys of one (loss, dtype) in a worker's .npz: "<loss>|<dtype>|<part>".
PARTS = ("none", "grad_none", "grad_mean", "mean")
FMA = re.compile(r"\bvf(?:n?m(?:add|sub)|maddsub|msubadd)\w*")
VAR_ENV = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_ENABLE_AVX")


# --- the worker: one process per target ----------------------------------------------------------
def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _inputs(info, dtype, n: int, rows: int, classes: int) -> dict:
    rows_loss = np.ndim(info.empty_inputs()[info.data[0]]) == 2
    rng = np.random.default_rng(_seed(info.name))
    inputs = info.make_inputs(rng, rows * classes if rows_loss else n, dtype)
    if not rows_loss and "axis" in inspect.signature(info.function).parameters:
        # Keras binary losses average over the last axis: size 1 keeps one loss per element
        inputs = {k: v.reshape(-1, 1) for k, v in inputs.items()}
    return inputs


def _flat_grads(grad) -> np.ndarray:
    grads = grad if isinstance(grad, tuple) else (grad,)
    return np.concatenate([np.asarray(g).reshape(-1) for g in grads if g is not None])


def _asm_census() -> dict:
    """FMA instructions and vector registers in the assembly of every compiled kernel."""
    from numba.core.dispatcher import Dispatcher

    census = {"signatures": 0, "with_fma": 0, "fma_instructions": 0, "with_ymm": 0, "with_zmm": 0}
    seen = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("fastloss"):
            continue
        for obj in list(vars(module).values()):
            if not isinstance(obj, Dispatcher) or id(obj) in seen:
                continue
            seen.add(id(obj))
            for sig in obj.signatures:
                asm = obj.inspect_asm(sig)
                fma = len(FMA.findall(asm))
                census["signatures"] += 1
                census["fma_instructions"] += fma
                census["with_fma"] += fma > 0
                census["with_ymm"] += "%ymm" in asm
                census["with_zmm"] += "%zmm" in asm
    return census


def worker(path: Path, n: int, rows: int, classes: int, asm: bool, losses: str | None) -> None:
    import warnings

    start = time.perf_counter()
    from numba.core import config
    from numba.core.registry import cpu_target

    from fastloss import registry

    registry.CLASSES = classes  # the row losses' generators read it at call time
    arrays = {}
    names = losses.split(",") if losses else list(registry.LOSSES)
    for name in names:
        info = registry.LOSSES[name]
        for dtype_name in DTYPES:
            dtype = np.dtype(dtype_name).type
            inputs = _inputs(info, dtype, n, rows, classes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # kl_div's "mean", torch's own warning
                none, grad_none = info.function(**inputs, reduction="none", return_grad=True)
                mean, grad_mean = info.function(**inputs, reduction="mean", return_grad=True)
            key = f"{name}|{dtype_name}|"
            arrays[key + "none"] = np.asarray(none).reshape(-1)
            arrays[key + "grad_none"] = _flat_grads(grad_none)
            arrays[key + "grad_mean"] = _flat_grads(grad_mean)
            arrays[key + "mean"] = np.asarray(mean).reshape(-1)
    computed = time.perf_counter() - start
    codegen = cpu_target.target_context.codegen()
    import fastloss

    meta = {
        "fastloss": str(Path(fastloss.__file__).parent),
        "NUMBA_CPU_NAME": config.CPU_NAME,
        "NUMBA_CPU_FEATURES": config.CPU_FEATURES,
        "cpu_name": codegen._get_host_cpu_name(),
        "features": sorted(f for f in codegen._tm_features.split(",") if f.startswith("+")),
        "seconds_compute": round(computed, 1),
        "asm": _asm_census() if asm else None,
    }
    meta["seconds_asm"] = round(time.perf_counter() - start - computed, 1)
    np.savez(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(meta))


# --- the driver ----------------------------------------------------------------------------------
def target_env(target: str) -> dict:
    """NUMBA_CPU_NAME / NUMBA_CPU_FEATURES of ``target`` (``{}`` for the host)."""
    if target == "host":
        return {}
    import llvmlite.binding as ll

    features = ll.get_host_cpu_features().flatten()
    if target == "host-nofma":
        flags = [("-fma" if f == "+fma" else f) for f in features.split(",")]
        return {"NUMBA_CPU_NAME": ll.get_host_cpu_name(), "NUMBA_CPU_FEATURES": ",".join(flags)}
    name, _, rest = target.partition(":")
    if name in NAMED and rest in ("", "host"):
        return {"NUMBA_CPU_NAME": name, "NUMBA_CPU_FEATURES": features if rest else ""}
    known = ["host", "host-nofma", *sorted(NAMED), "<name>:host"]
    raise SystemExit(f"unknown target {target!r}; known: {', '.join(known)}")


def _short_env(target: str) -> dict:
    env = target_env(target)
    if env.get("NUMBA_CPU_FEATURES"):  # the full feature string is long
        fma = "-fma" if target == "host-nofma" else "as is"
        env["NUMBA_CPU_FEATURES"] = f"<the host's, {fma}>"
    return env


def snapshot(rev: str, workdir: Path) -> tuple[str, Path]:
    """``fastloss/`` and ``kernels/`` of commit ``rev``, extracted (``git archive``, read-only)
    into ``workdir``, laid out as the installed package: ``fastloss/kernels`` links to
    ``kernels``. Returns the commit and the directory to put first on ``PYTHONPATH``."""
    git = ["git", "-C", str(ROOT)]
    sha = subprocess.check_output([*git, "rev-parse", "--verify", f"{rev}^{{commit}}"], text=True)
    sha = sha.strip()
    archive = subprocess.check_output([*git, "archive", "--format=tar", sha, "fastloss", "kernels"])
    dest = workdir / f"src-{sha[:12]}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "fastloss" / "kernels").symlink_to("../kernels", target_is_directory=True)
    return sha, dest


def launch(target: str, args, workdir: Path) -> tuple[subprocess.Popen, Path, Path]:
    cache = Path(tempfile.mkdtemp(prefix=f"cache-{target}-", dir=workdir))
    env = {k: v for k, v in os.environ.items() if k not in VAR_ENV}
    if args.source is not None:  # ahead of the editable install's finder (last on meta_path)
        env["PYTHONPATH"] = os.pathsep.join([str(args.source), env.get("PYTHONPATH", "")])
    env.update(target_env(target))
    env.update(FASTLOSS_CACHE_DIR=str(cache), NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="1")
    out = workdir / f"{target.replace(':', '_')}.npz"
    cmd = [sys.executable, __file__, "--worker", str(out)]
    cmd += ["--n", str(args.n), "--rows", str(args.rows), "--classes", str(args.classes)]
    cmd += [] if args.asm else ["--no-asm"]
    cmd += ["--losses", args.losses] if args.losses else []
    with open(out.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, out, cache


def run_workers(targets: list[str], args, workdir: Path) -> dict:
    """Run one worker per target, ``args.jobs`` at a time; their metadata, by target. A worker
    that fails or runs past ``args.timeout`` seconds stops the run (its log is printed), and the
    workers still running are ended."""
    pending, running, metas = list(targets), {}, {}
    try:
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                target = pending.pop(0)
                running[target] = (*launch(target, args, workdir), time.perf_counter())
            for target, (proc, out, cache, started) in list(running.items()):
                late = time.perf_counter() - started > args.timeout
                if proc.poll() is None and not late:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                del running[target]
                shutil.rmtree(cache, ignore_errors=True)
                if proc.returncode:
                    sys.stderr.write(out.with_suffix(".log").read_text(errors="replace")[-4000:])
                    why = f"ran past {args.timeout} s" if late else f"failed ({proc.returncode})"
                    raise SystemExit(f"{target}: worker {why}")
                meta = json.loads(out.with_suffix(".json").read_text())
                meta.update(env=_short_env(target), seconds=round(time.perf_counter() - started, 1))
                meta["commit"] = args.commit_sha
                out.with_suffix(".json").write_text(json.dumps(meta))
                metas[target] = meta
                print(f"# {target}: done in {meta['seconds']:.0f} s", file=sys.stderr, flush=True)
            time.sleep(0.2)
    finally:
        for proc, *_ in running.values():
            proc.kill()
            proc.wait()
    return {t: metas[t] for t in targets}


def compare(host: np.ndarray, other: np.ndarray) -> dict:
    """The largest difference in ulps of ``host``'s element (``max_ulp``) and in ulps of the
    largest finite ``|host|`` of the array (``max_ulp_of_max``: an absolute measure, small where
    a large ``max_ulp`` comes from a result near zero), and the fraction of elements whose bits
    differ."""
    same = {"max_ulp": 0.0, "max_ulp_of_max": 0.0, "frac": 0.0, "n": int(host.size)}
    if host.shape != other.shape or host.dtype != other.dtype:
        return dict(same, max_ulp=float("inf"), max_ulp_of_max=float("inf"), frac=1.0)
    uint = {4: np.uint32, 8: np.uint64}[host.dtype.itemsize]
    differ = host.view(uint) != other.view(uint)
    differ &= ~(np.isnan(host) & np.isnan(other))  # any NaN equals any NaN
    if not differ.any():
        return same
    h, o = host[differ], other[differ]
    largest = np.max(np.abs(host), where=np.isfinite(host), initial=0.0)
    with np.errstate(all="ignore"):
        diff = np.abs(o.astype(np.float64) - h)
        ulps = diff / np.abs(np.spacing(h)).astype(np.float64)
        of_max = diff / float(np.spacing(largest))
    ulps = np.where(np.isfinite(ulps), ulps, np.inf)
    ulps = np.where(ulps == 0, 0.5, ulps)  # +0 against -0
    of_max = np.where(np.isfinite(of_max), of_max, np.inf)
    return dict(
        same,
        max_ulp=float(ulps.max()),
        max_ulp_of_max=float(of_max.max()),
        frac=float(differ.mean()),
    )


def _cell(c: dict) -> str:
    if c["frac"] == 0:
        return f"{'=':>22}"
    ulp, of_max = c["max_ulp"], f"({c['max_ulp_of_max']:.2g})"
    ulp = f"{ulp:.0f}" if ulp >= 1 else f"{ulp:.2g}"
    return f"{ulp:>6} {of_max:>6} {100 * c['frac']:>7.3f}%"


def report(results: dict, metas: dict, reference: str, show_all: bool) -> str:
    lines = []
    for target, meta in metas.items():
        asm = meta["asm"] or {}
        isa = "/".join(f for f in ("fma", "avx", "avx2", "avx512f") if f"+{f}" in meta["features"])
        if not meta["features"]:
            isa = f"{meta['cpu_name']}'s own"
        if meta.get("commit"):
            lines.append(f"{target:<11} fastloss at commit {meta['commit']} ({meta['fastloss']})")
        census = "not inspected"
        if asm:
            census = (
                f"{asm['with_fma']}/{asm['signatures']} compiled functions with FMA "
                f"({asm['fma_instructions']} instr.), {asm['with_ymm']} with ymm, "
                f"{asm['with_zmm']} with zmm"
            )
        lines.append(
            f"{target:<11} cpu={meta['cpu_name']} env={meta['env']} features={isa or 'sse'}; "
            f"asm: {census}; {meta['seconds']:.0f} s"
        )
    lines += [
        "",
        "cells: largest difference in ulps of the reference's element, (in ulps of the array's",
        "largest |value|), % of elements whose bits differ; '=': every bit equal",
    ]
    head = f"{'loss':<33} {'dtype':<8}" + "".join(
        f" {p:>22}" for p in ("none (elements)", "grad (none)", "grad (mean)", "mean")
    )
    for target, per_key in results.items():
        same = [k for k, parts in per_key.items() if all(c["frac"] == 0 for c in parts.values())]
        lines += [
            "",
            f"{target} vs {reference}: {len(same)}/{len(per_key)} (loss, dtype) bit-identical",
        ]
        rows = [k for k in per_key if show_all or k not in same]
        if rows:
            lines.append(head)
        for key in rows:
            name, dtype = key.split("|")
            cells = "".join(f" {_cell(per_key[key][p])}" for p in PARTS)
            lines.append(f"{name:<33} {dtype:<8}{cells}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    parser.add_argument("--n", type=int, default=100_000, help="elements (elementwise losses)")
    parser.add_argument("--rows", type=int, default=2000, help="rows (row losses)")
    parser.add_argument("--classes", type=int, default=100, help="classes (row losses)")
    parser.add_argument("--jobs", type=int, default=1, help="workers at once (default 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker (900)")
    parser.add_argument(
        "--commit",
        help="measure this commit (git archive into a temporary directory), not the tree",
    )
    parser.add_argument("--losses", help="only these losses (comma-separated)")
    parser.add_argument("--no-asm", dest="asm", action="store_false", help="skip inspect_asm")
    parser.add_argument("--all", action="store_true", help="list identical losses too")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--keep", type=Path, help="keep the .npz files in this directory")
    parser.add_argument("--load", type=Path, help="compare the files of an earlier --keep")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n, args.rows, args.classes, args.asm, args.losses)
        return 0

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for target in targets:
        target_env(target)  # unknown names fail before anything runs
    if args.load:
        workdir = args.load
        files = {t: workdir / t.replace(":", "_") for t in targets}
        metas = {t: json.loads(f.with_suffix(".json").read_text()) for t, f in files.items()}
        data = {t: dict(np.load(f.with_suffix(".npz"))) for t, f in files.items()}
    else:
        with tempfile.TemporaryDirectory(prefix="fastloss-isa-") as tmp:
            workdir = args.keep or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            args.commit_sha, args.source = None, None
            if args.commit:
                args.commit_sha, args.source = snapshot(args.commit, workdir)
            metas = run_workers(targets, args, workdir)
            data = {t: dict(np.load(workdir / f"{t.replace(':', '_')}.npz")) for t in targets}

    reference, *others = targets
    common = set.intersection(*(set(d) for d in data.values()))  # --losses may differ
    keys = list(dict.fromkeys(k.rsplit("|", 1)[0] for k in data[reference] if k in common))
    results = {
        target: {
            key: {
                p: compare(data[reference][f"{key}|{p}"], data[target][f"{key}|{p}"]) for p in PARTS
            }
            for key in keys
        }
        for target in others
    }
    if args.json:
        print(json.dumps({"reference": reference, "targets": metas, "results": results}, indent=1))
    else:
        print(report(results, metas, reference, args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
