"""The softmax family's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own)::

    python -m pytest tests/cuda_softmax_compile_cases.py

The row kernels that :mod:`fastloss.kernels.cuda.rows` generates from the declarations of
cross-entropy (class indices, smoothed, class probabilities) and NLL in
:mod:`fastloss.kernels.softmax` (a block per row and a warp per row), for every flag
combination, and the check, layout and reduction kernels of :mod:`fastloss.kernels.cuda.softmax`,
are typed and lowered to LLVM IR for sm_90 with the argument types :mod:`fastloss._cuda_softmax`
passes (and compiled to PTX when NVVM is available), as ``tests/cuda_compile_cases.py`` does for
the elementwise kernels; no approximate ``__nv_fast_*`` function may appear.
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
from numba import types  # noqa: E402

import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
from fastloss.kernels import softmax as specs  # noqa: E402
from fastloss.kernels.cuda import softmax  # noqa: E402

F16, F32, F64, I64, B = types.float16, types.float32, types.float64, types.int64, types.boolean

SPECS = [specs.CROSS_ENTROPY, specs.CROSS_ENTROPY_SMOOTHED, specs.CROSS_ENTROPY_PROBS, specs.NLL]


def signatures(spec, dtype) -> dict[str, list]:
    """Argument types of both row kernels, as ``_cuda_rows.launch`` passes them: ``(rows, C)``
    C-contiguous matrices in the compute dtype, int64 class indices, ``(C,)`` class weights
    in the compute dtype, ``ignore_*`` as int64 and the other params and the scales as
    float64, float64 per-row outputs."""
    head = [arr(dtype, 2)] * spec.inputs + [arr(I64)] * spec.row_inputs
    head += [arr(dtype)] * spec.column_inputs
    head += [I64 if p.startswith("ignore") else F64 for p in spec.params]
    outputs = [arr(F64)] * spec.outputs
    grads = [F64] * len(spec.scales) + [arr(dtype, 2)] * len(spec.grads)
    return {"value_rows": head + outputs, "value_grad_rows": head + grads + outputs}


def cases(declarations):
    for spec in declarations:
        for flags in itertools.product((False, True), repeat=len(spec.flags)):
            label = spec.name + "".join(
                f"-{f}{int(v)}" for f, v in zip(spec.flags, flags, strict=True)
            )
            yield pytest.param(spec, flags, id=label)


@pytest.mark.parametrize("spec, flags", list(cases(SPECS)))
def test_spec_kernels(spec, flags):
    """Every flag set: the fused kernels (a block per row, a warp per row) in float32, the
    forward one in float64."""
    module = cuda_rows.kernels(spec, flags)
    check(module.value_grad_rows, signatures(spec, F32)["value_grad_rows"])
    check(module.value_grad_rows_warp, signatures(spec, F32)["value_grad_rows"])
    check(module.value_rows, signatures(spec, F64)["value_rows"])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_every_option_in_both_dtypes(dtype):
    """Class weights, softcap, z-loss and focal at once: the column values in the input's
    precision (``expf`` for float32: the softmax numerators, and the CPU's own ``tanh``, no
    libdevice ``tanhf``), the row's float64 ``log``, ``expm1`` and ``pow``."""
    module = cuda_rows.kernels(specs.CROSS_ENTROPY_SMOOTHED, (True,) * 4)
    exp = "__nv_expf" if dtype == F32 else "__nv_exp"
    for kind, argtypes in signatures(specs.CROSS_ENTROPY_SMOOTHED, dtype).items():
        for suffix in ("", "_warp"):
            kernel = getattr(module, kind + suffix)
            check(kernel, argtypes, expect=(exp, "__nv_log", "__nv_expm1", "__nv_pow"))
            ir = lower(kernel, argtypes)
            assert "__nv_tanh" not in ir, f"{kind}: libdevice's tanh instead of the CPU's"


@pytest.mark.parametrize("target", [I64, types.int32, types.uint8, types.uint64])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_check_targets(dtype, target):
    k = softmax.kernels(256)
    args = [arr(target), I64, I64, I64, B, arr(dtype), B, B, arr(I64), arr(F64)]
    check(k.check_targets, args)


@pytest.mark.parametrize(
    "src, dst", [(F32, F32), (F64, F64), (F16, F32), (F64, F32), (F32, F16), (F32, F64)]
)
def test_swap_last(src, dst):
    """The class axis moved last (the input, cast to the compute dtype) and back (the
    gradient, cast to the input's dtype)."""
    check(softmax.kernels(256).swap_last, [arr(src, 3), arr(dst, 3)])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_finalize(dtype):
    zero_d = types.Array(dtype, 0, "C")
    check(softmax.kernels(256).finalize, [arr(F64), arr(F64), B, F64, F64, zero_d, zero_d])


def test_small_block():
    """The trees also lower for a block of 4 threads (the simulator's size)."""
    small = softmax.kernels(4)
    check(small.check_targets, [arr(I64), I64, I64, I64, B, arr(F32), B, B, arr(I64), arr(F64)])
    check(small.finalize, [arr(F64), arr(F64), B, F64, F64] + [types.Array(F32, 0, "C")] * 2)
