"""The softmax family's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own)::

    python -m pytest tests/cuda_softmax_compile_cases.py

Each kernel of :func:`fastloss.kernels.cuda.softmax.kernels` is typed and lowered to LLVM IR for
sm_90 with the argument types :mod:`fastloss._cuda_softmax` passes (and compiled to PTX when
NVVM is available), as ``tests/cuda_compile_cases.py`` does for the elementwise kernels; no
approximate ``__nv_fast_*`` function may appear.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

# the CC patch, the NVVM probe and the checks are the regression compile cases' own
from cuda_compile_cases import arr, check  # noqa: E402, I001
from numba import types  # noqa: E402

from fastloss.kernels.cuda import softmax  # noqa: E402

F32, F64, I64, B = types.float32, types.float64, types.int64, types.boolean


K = softmax.kernels(256)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("target", [I64, types.int32, types.uint8])
def test_index_rows(dtype, target):
    exp = "__nv_expf" if dtype == F32 else "__nv_exp"
    tanh = "__nv_tanhf" if dtype == F32 else "__nv_tanh"
    args = [arr(dtype, 3), arr(target), arr(dtype), B, I64, dtype, dtype, dtype, dtype, dtype]
    args += [I64, arr(F64), B, arr(dtype, 3), arr(F64), arr(F64)]
    check(K.index_rows, args, expect=(exp, tanh, "__nv_log"))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_prob_and_nll_rows(dtype):
    check(
        K.prob_rows,
        [arr(dtype, 3), arr(dtype, 3), arr(dtype), B, dtype, arr(F64), B, arr(dtype, 3), arr(F64)],
    )
    args = [arr(dtype, 3), arr(I64), arr(dtype), B, I64, dtype, arr(F64), B, arr(dtype, 3)]
    check(K.nll_rows, args + [arr(F64)])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_reductions(dtype):
    check(K.finalize, [arr(F64), arr(F64), B, arr(F64), arr(dtype, 0), arr(dtype, 0)])
    check(K.rows_out, [arr(F64), arr(F64), B, arr(dtype), arr(dtype)])
    check(K.check_targets, [arr(I64), I64, I64, arr(dtype), B, B, F64, arr(I64), arr(F64)])
    check(K.set_norm, [arr(F64), F64, F64, F64])


def test_small_block():
    """The tree reductions also lower for a block of 4 threads (the simulator's size)."""
    small = softmax.kernels(4)
    args = [arr(F32, 3), arr(I64), arr(F32), B, I64, F32, F32, F32, F32, F32]
    check(small.index_rows, args + [I64, arr(F64), B, arr(F32, 3), arr(F64), arr(F64)])
