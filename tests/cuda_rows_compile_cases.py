"""The row factory's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own)::

    python -m pytest tests/cuda_rows_compile_cases.py

Every kernel (``value_rows``, ``value_grad_rows``: a block per row; their ``_warp`` twins: a
warp per short row) of every flag combination of both specs of :mod:`fastloss.kernels.pairwise`
is typed and lowered to LLVM IR for sm_90 with the argument types :mod:`fastloss._cuda_rows`
passes (and compiled to PTX when NVVM is available), as ``tests/cuda_compile_cases.py`` does for
the elementwise kernels; no approximate ``__nv_fast_*`` function may appear. A spec with a max
sweep (which neither loss has) lowers too, and so do groups smaller than a warp.
"""

from __future__ import annotations

import itertools
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

# the CC patch, the NVVM probe and the checks are the regression compile cases' own
from cuda_compile_cases import arr, check, lower  # noqa: E402, I001
from numba import njit, types  # noqa: E402

import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
from fastloss.kernels import pairwise, rows  # noqa: E402
from fastloss.kernels._jit import POINT_OPTIONS  # noqa: E402

F32, F64 = types.float32, types.float64


def signatures(spec: rows.RowSpec, dtype) -> dict[str, list]:
    """Argument types of both kernels, as ``_cuda_rows`` passes them: ``(rows, D)`` C-contiguous
    matrices in the compute dtype, float64 per-row arrays and parameters, a float64 scale."""
    head = [arr(dtype, 2)] * spec.inputs + [arr(F64)] * spec.row_inputs + [F64] * len(spec.params)
    return {
        "value_rows": head + [arr(F64)],
        "value_grad_rows": head + [F64] + [arr(dtype, 2)] * len(spec.grads) + [arr(F64)],
    }


def _cases():
    for spec in (pairwise.COSINE_EMBEDDING, pairwise.TRIPLET_MARGIN):
        for flags in itertools.product((False, True), repeat=len(spec.flags)):
            label = spec.name + "".join(
                f"-{f}{int(v)}" for f, v in zip(spec.flags, flags, strict=True)
            )
            yield pytest.param(spec, flags, id=label)


@pytest.mark.parametrize("spec, flags", list(_cases()))
def test_spec_kernels(spec, flags):
    """Every kernel of every flag set: the fused kernels in float32, the forward ones in
    float64 (both dtypes of both below)."""
    module = cuda_rows.kernels(spec, flags)
    for suffix in ("", "_warp"):
        check(getattr(module, "value_grad_rows" + suffix), signatures(spec, F32)["value_grad_rows"])
        check(getattr(module, "value_rows" + suffix), signatures(spec, F64)["value_rows"])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec", [pairwise.COSINE_EMBEDDING, pairwise.TRIPLET_MARGIN],
                         ids=lambda s: s.name)  # fmt: skip
def test_both_dtypes(spec, dtype):
    """Both kernels in both dtypes, with the generic ``p`` (``pow`` from libdevice)."""
    module = cuda_rows.kernels(spec, (False,) * len(spec.flags))
    expect = ("__nv_powf" if dtype == F32 else "__nv_pow",) if spec.flags else ()
    for kind, argtypes in signatures(spec, dtype).items():
        check(getattr(module, kind), argtypes, expect=expect)
        check(getattr(module, kind + "_warp"), argtypes, expect=expect)


@njit(**POINT_OPTIONS)
def extremes(x, c):
    return x, -x


@njit(**POINT_OPTIONS)
def extremes_row(top, bottom, x, scale):
    return top + bottom, (top * scale,)


@njit(**POINT_OPTIONS)
def extremes_grad(x, c, k):
    return k * x


EXTREMES = rows.RowSpec(
    "extremes_test", 1, (rows.Sweep(extremes, 2, "max"),), extremes_row, extremes_grad, 1, (0,)
)


@pytest.mark.parametrize("threads", [1, 4, 256])
def test_max_sweep_and_block_sizes(threads, monkeypatch):
    """A max sweep's tree (NaN wins), one gradient, and the trees of other block sizes."""
    monkeypatch.setattr(cuda_rows, "THREADS_PER_BLOCK", threads)
    module = cuda_rows.kernels(EXTREMES)
    assert module.THREADS == threads
    for kind, argtypes in signatures(EXTREMES, F32).items():
        check(getattr(module, kind), argtypes)
    small = cuda_rows.kernels(pairwise.TRIPLET_MARGIN, (True, False, False))
    check(small.value_grad_rows, signatures(pairwise.TRIPLET_MARGIN, F32)["value_grad_rows"])


@pytest.mark.parametrize("group", [1, 8, 32])
def test_groups(group, monkeypatch):
    """Rows of ``group`` threads, ``256 // group`` a block: a warp's lanes, or part of them
    (``syncwarp`` over the row's lanes only); the row length chooses the kernel."""
    monkeypatch.setattr(cuda_rows, "WARP_THREADS", group)
    module = cuda_rows.kernels(EXTREMES)
    assert (module.GROUP, module.GROUP_MASK) == (group, (1 << group) - 1)
    for kind, argtypes in signatures(EXTREMES, F32).items():
        ir = lower(getattr(module, kind + "_warp"), argtypes)
        assert "llvm.nvvm.bar.warp.sync" in ir and "barrier0" not in ir, kind
        check(getattr(module, kind + "_warp"), argtypes)
    assert cuda_rows.grid(module, 10, 1024) == ("_warp", -(-10 * group // 256), 256)
    assert cuda_rows.grid(module, 10, 1025) == ("", 10, 256)


def test_block_size_is_checked(monkeypatch):
    monkeypatch.setattr(cuda_rows, "THREADS_PER_BLOCK", 96)
    with pytest.raises(ValueError, match="power of two"):
        cuda_rows.kernels(EXTREMES)
    monkeypatch.setattr(cuda_rows, "THREADS_PER_BLOCK", 256)
    monkeypatch.setattr(cuda_rows, "WARP_THREADS", 64)
    with pytest.raises(ValueError, match="WARP_THREADS"):
        cuda_rows.kernels(EXTREMES)
    monkeypatch.setattr(cuda_rows, "WARP_THREADS", 32)
    monkeypatch.setattr(cuda_rows, "SHORT_ROW", -1)
    with pytest.raises(ValueError, match="SHORT_ROW"):
        cuda_rows.kernels(EXTREMES)
