"""The CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own).

The simulator runs kernels as Python, so it cannot catch what only the CUDA compiler rejects
(an undecorated Python function in device code, an unsupported construct, a typing error).
Here every generated kernel is typed and lowered to LLVM IR by numba-cuda's compiler, and when
NVVM is available (a CUDA toolkit, e.g. ``numba-cuda[cu12]``, or ``CUDA_HOME``) also compiled
to PTX. Compiling a kernel that calls a device function asks the current device for its compute
capability (``CUDADispatcher.compile_device``); with no GPU this file answers for an H100.

It also checks that no point function is compiled with fast math: float32 ``exp``/``log`` and
division would become the approximate ``__nv_fast_*`` functions (see
:func:`fastloss.kernels.cuda.elementwise.device_function`).
"""

from __future__ import annotations

import itertools
import os
import re
from types import SimpleNamespace

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

from numba import cuda, types  # noqa: E402
from numba.cuda.compiler import compile_cuda  # noqa: E402

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
from fastloss.kernels import regression  # noqa: E402
from fastloss.kernels.elementwise import ElementwiseSpec  # noqa: E402

CC = (9, 0)
if not cuda.is_available():
    import numba.cuda.dispatcher as _dispatcher

    _dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)

F16, F32, F64 = types.float16, types.float32, types.float64


def vector(dtype, layout="C"):
    return types.Array(dtype, 1, layout)


def _probe(x):
    x[0] = 1.0


def _nvvm_available() -> bool:
    try:
        cuda.compile_ptx(_probe, (vector(F32),), cc=CC)
        return True
    except Exception:  # no NVVM/NVRTC (no toolkit): the LLVM IR checks still run
        return False


NVVM = _nvvm_available()


def lower(kernel, argtypes) -> str:
    """LLVM IR of ``kernel`` for ``argtypes``, its device functions included."""
    result = compile_cuda(
        kernel.py_func, types.void, tuple(argtypes), cc=CC, nvvm_options={"opt": 3}
    )
    return result.library.get_llvm_str()


def arr(dtype, ndim=1):
    """A C-contiguous array type."""
    return types.Array(dtype, ndim, "C")


def check(kernel, argtypes, expect=()) -> None:
    """``kernel`` lowers for ``argtypes`` without approximate functions, calling each libdevice
    function named in ``expect`` (and compiles to PTX when NVVM is available)."""
    ir = lower(kernel, argtypes)
    fast = sorted(set(re.findall(r"__nv_fast_\w+", ir)))
    assert not fast, f"{kernel.__name__}{tuple(argtypes)}: approximate functions {fast}"
    for name in expect:
        assert name in ir, f"{kernel.__name__}{tuple(argtypes)}: {name} not called"
    if NVVM:
        ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(argtypes), cc=CC)
        assert ".entry" in ptx


def _specs():
    for value in vars(regression).values():
        if isinstance(value, ElementwiseSpec):
            for flags in itertools.product((False, True), repeat=len(value.flags)):
                label = value.name + "".join(
                    f"-{f}{int(v)}" for f, v in zip(value.flags, flags, strict=True)
                )
                yield pytest.param(value, flags, id=label)


def signatures(spec, weighted: bool, dtype):
    """Argument types of every kernel of ``spec``'s generated module, as ``_cuda`` passes
    them: contiguous 1-D arrays in the compute dtype, scalar parameters in that dtype."""
    arrays = [vector(dtype)] * (spec.arrays + weighted)
    params = [dtype] * len(spec.params)
    grads = [vector(dtype)] * len(spec.grads)
    found = {
        "reduce_value": arrays + params + [vector(F64)],
        "reduce_value_grad": arrays + params + [dtype] + grads + [vector(F64)],
        "map_value": arrays + params + [vector(dtype)],
        "map_value_grad": arrays + params + [vector(dtype), dtype] + grads,
    }
    if weighted:
        found["reduce_value_grad_by"] = arrays + params + [vector(dtype)] + grads + [vector(F64)]
    return found


@pytest.mark.parametrize("spec, flags", list(_specs()))
def test_spec_kernels(spec, flags):
    module = cuda_factory.kernels(spec, flags, False)
    found = signatures(spec, False, F32)
    check(module.reduce_value_grad, found["reduce_value_grad"])
    check(module.map_value, signatures(spec, False, F64)["map_value"])


@pytest.mark.parametrize("dtype", [F32, F64])
def test_weighted_kernels(dtype):
    spec = regression.GAUSSIAN_NLL
    module = cuda_factory.kernels(spec, (True,), True)
    for kind, argtypes in signatures(spec, True, dtype).items():
        check(getattr(module, kind), argtypes)


def test_common_kernels():
    common = cuda_factory.common()
    zero_d = types.Array(F32, 0, "C")
    pairs = types.UniTuple(types.int64, 2)
    check(common.block_sum, [vector(F32), vector(F64)])
    check(common.finalize, [vector(F64), types.int64, F64, zero_d])
    check(common.finalize, [vector(F64), types.int64, F64, types.Array(F64, 0, "C")])
    check(common.finalize_by, [vector(F64), types.int64, vector(F64), zero_d])
    check(common.finalize_weights, [vector(F64), types.int64, vector(F64), vector(F32)])
    check(common.fill, [vector(F32), F32])
    check(common.unbroadcast, [vector(F32), vector(F32), pairs, pairs, pairs, types.int64])
    check(common.copy_0_0, [types.Array(F16, 0, "C"), zero_d])
    check(common.copy_0_2, [zero_d, types.Array(F32, 2, "C")])
    check(common.copy_1_1, [vector(types.int64, "A"), vector(F64)])
    check(common.copy_1_1, [vector(types.bool_, "A"), vector(F64)])
    check(common.copy_1_1, [vector(F32), vector(F16, "A")])
    check(common.copy_2_3, [types.Array(F16, 2, "A"), types.Array(F32, 3, "C")])
    check(common.copy_3_3, [types.Array(F64, 3, "A"), types.Array(F32, 3, "F")])


@pytest.mark.parametrize("spec, flags", list(_specs()))
def test_after_cpu_kernels(spec, flags):
    """A process that ran a loss on the CPU can still lower its CUDA kernels: the CPU
    overloads of the vmath functions must not leak into the CUDA target's typing (an
    ``inline="always"`` CPU overload once did, for log-cosh)."""
    import numpy as np

    # the point function itself (never cached), so its CPU typing really happens here
    point = np.float32(0.5)
    params = [np.float32(1e-3)] * len(spec.params)
    spec.value_grad(*([point] * spec.arrays), *params, *flags)
    module = cuda_factory.kernels(spec, flags, False)
    check(module.reduce_value_grad, signatures(spec, False, F32)["reduce_value_grad"])
