"""Keras's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_keras.py`` in a process of its own)::

    python -m pytest tests/cuda_keras_compile_cases.py

``keras_rows`` and ``masked_norm`` are typed and lowered to LLVM IR for sm_90 with the argument
types :mod:`fastloss._cuda_softmax` passes (and compiled to PTX when NVVM is available); no
approximate ``__nv_fast_*`` function may appear.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

from numba import cuda, types  # noqa: E402
from numba.cuda.compiler import compile_cuda  # noqa: E402

from fastloss.kernels.cuda import softmax  # noqa: E402

CC = (9, 0)
if not cuda.is_available():
    import numba.cuda.dispatcher as _dispatcher

    _dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)

F32, F64, I64, B = types.float32, types.float64, types.int64, types.boolean


def arr(dtype, ndim=1):
    return types.Array(dtype, ndim, "C")


def _probe(x):
    x[0] = 1.0


def _nvvm_available() -> bool:
    try:
        cuda.compile_ptx(_probe, (arr(F32),), cc=CC)
        return True
    except Exception:  # no NVVM/NVRTC (no toolkit): the LLVM IR checks still run
        return False


NVVM = _nvvm_available()


def check(kernel, argtypes, expect=()) -> None:
    argtypes = tuple(argtypes)
    result = compile_cuda(kernel.py_func, types.void, argtypes, cc=CC, nvvm_options={"opt": 3})
    ir = result.library.get_llvm_str()
    fast = sorted(set(re.findall(r"__nv_fast_\w+", ir)))
    assert not fast, f"{kernel.__name__}{argtypes}: approximate functions {fast}"
    for name in expect:
        assert name in ir, f"{kernel.__name__}{argtypes}: {name} not called"
    if NVVM:
        ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=CC)
        assert ".entry" in ptx


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
