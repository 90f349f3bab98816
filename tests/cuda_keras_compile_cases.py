"""Keras's CUDA kernels compile for the real device target, without a GPU (run by
``tests/test_cuda_suites.py`` in a process of its own)::

    python -m pytest tests/cuda_keras_compile_cases.py

The row kernels that :mod:`fastloss.kernels.cuda.rows` generates from the declarations of
Keras's probability cross-entropies in :mod:`fastloss.kernels.softmax` (categorical and focal
from probabilities, focal from logits, sparse), with and without the focal flag, are typed and
lowered to LLVM IR for sm_90 with the argument types :mod:`fastloss._cuda_softmax` passes (and
compiled to PTX when NVVM is available); no approximate ``__nv_fast_*`` function may appear.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

# the CC patch, the NVVM probe and the checks are the softmax compile cases' own
from cuda_compile_cases import check  # noqa: E402, I001
from cuda_softmax_compile_cases import F32, F64, cases, signatures  # noqa: E402

import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
from fastloss.kernels import softmax as specs  # noqa: E402

SPECS = [specs.KERAS_PROBS, specs.KERAS_FOCAL_LOGITS, specs.KERAS_SPARSE]


@pytest.mark.parametrize("spec, flags", list(cases(SPECS)))
def test_spec_kernels(spec, flags):
    """Both kernels in both dtypes, each calling libdevice's precise ``log`` in the input's
    precision, and ``exp`` where there is a softmax or a focal power."""
    module = cuda_rows.kernels(spec, flags)
    for dtype in (F32, F64):
        log = "__nv_logf" if dtype == F32 else "__nv_log"
        exp = "__nv_expf" if dtype == F32 else "__nv_exp"
        powers = spec is specs.KERAS_FOCAL_LOGITS or any(flags)
        expect = (log, exp) if powers else (log,)
        for kind, argtypes in signatures(spec, dtype).items():
            check(getattr(module, kind), argtypes, expect=expect)
        kind = "value_grad_rows_warp"  # a warp per row
        check(getattr(module, kind), signatures(spec, dtype)["value_grad_rows"], expect=expect)


def test_small_block(monkeypatch):
    """The trees of a block of 4 threads (the simulator's size)."""
    monkeypatch.setattr(cuda_rows, "THREADS_PER_BLOCK", 4)
    module = cuda_rows.kernels(specs.KERAS_FOCAL_LOGITS, (True,))
    assert module.THREADS == 4
    check(module.value_grad_rows, signatures(specs.KERAS_FOCAL_LOGITS, F32)["value_grad_rows"])
