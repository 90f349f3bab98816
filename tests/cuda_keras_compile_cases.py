"""Keras's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own)::

    python -m pytest tests/cuda_keras_compile_cases.py

``keras_rows`` and ``masked_norm`` are typed and lowered to LLVM IR for sm_90 with the argument
types :mod:`fastloss._cuda_softmax` passes (and compiled to PTX when NVVM is available); no
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


def keras_args(dtype, target=I64):
    args = [arr(dtype, 3), arr(dtype, 3), arr(target), B, B, I64]
    args += [dtype] * 6  # smoothing, spread, alpha, gamma, low, high
    return args + [I64, arr(F64), B, arr(dtype, 3), arr(F64)]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("target", [I64, types.int32, types.uint8])
def test_keras_rows(dtype, target):
    exp = "__nv_expf" if dtype == F32 else "__nv_exp"
    log = "__nv_logf" if dtype == F32 else "__nv_log"
    check(softmax.kernels(256).keras_rows, keras_args(dtype, target), expect=(exp, log))


def test_masked_norm_and_small_block():
    check(softmax.kernels(256).masked_norm, [arr(F64)])
    check(softmax.kernels(4).keras_rows, keras_args(F32))
