"""The CUDA kernels of the binary losses and of kl_div lower for the real device target, without
a GPU and without fast math (run by ``tests/test_cuda_suites.py`` in a process of its own).

As ``tests/cuda_compile_cases.py`` (whose helpers this file uses): every generated kernel of
every spec of :mod:`fastloss.kernels.binary` and :mod:`fastloss.kernels.divergence`, every flag
combination, is typed and lowered to LLVM IR for sm_90 (and to PTX when NVVM is available), and
no approximate ``__nv_fast_*`` function may appear in it: float32 ``exp``/``log``/``log1p`` and
divisions stay the precise libdevice functions.
"""

from __future__ import annotations

import itertools
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

# the device patch (no GPU: an H100's compute capability) and the lowering check
from cuda_compile_cases import F32, F64, check, signatures  # noqa: E402

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
from fastloss.kernels import binary, divergence  # noqa: E402
from fastloss.kernels.elementwise import ElementwiseSpec  # noqa: E402

# the specs that the public functions launch with a weight
WEIGHTED = ("bce", "bce_logits", "bce_logits_pos")


def _specs():
    for family in (binary, divergence):
        for value in vars(family).values():
            if isinstance(value, ElementwiseSpec):
                for flags in itertools.product((False, True), repeat=len(value.flags)):
                    label = value.name + "".join(
                        f"-{f}{int(v)}" for f, v in zip(value.flags, flags, strict=True)
                    )
                    yield pytest.param(value, flags, id=label)


SPECS = list(_specs())


def test_every_spec_is_listed():
    names = {p.values[0].name for p in SPECS}
    assert names == {
        "bce",
        "bce_logits",
        "bce_logits_pos",
        "sigmoid_focal",
        "keras_bce",
        "keras_focal",
        "kl_div",
    }


@pytest.mark.parametrize("spec, flags", SPECS)
def test_spec_kernels(spec, flags):
    """Every kernel kind: the fused passes in float32 (where fast math would bite), the
    forward-only ones in float64."""
    module = cuda_factory.kernels(spec, flags, False)
    f32, f64 = signatures(spec, False, F32), signatures(spec, False, F64)
    check(module.reduce_value_grad, f32["reduce_value_grad"])
    check(module.map_value_grad, f32["map_value_grad"])
    check(module.reduce_value, f64["reduce_value"])
    check(module.map_value, f64["map_value"])


@pytest.mark.parametrize("spec", [p.values[0] for p in SPECS if p.values[0].name in WEIGHTED])
def test_weighted_kernels(spec):
    module = cuda_factory.kernels(spec, (), True)
    for kind, argtypes in signatures(spec, True, F32).items():
        check(getattr(module, kind), argtypes)
