"""The CUDA kernels of the losses of ``test_elementwise.py`` lower for the real device target.

Run by ``tests/test_elementwise.py`` in a pytest process of its own, without the simulator and
without a GPU (``cuda_compile_cases.py`` answers for an H100 and holds the lowering check: no
approximate ``__nv_fast_*`` function, PTX where NVVM is available). Every kernel kind of each
declared loss's spec, for every flag combination: the fused passes in float32 (where fast math
would bite), the forward-only ones in float64.
"""

from __future__ import annotations

import itertools
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compiles for the real CUDA target, not the simulator", allow_module_level=True)
pytest.importorskip("numba_cuda")

from conftest import OTHER_REFERENCES  # noqa: E402
from cuda_compile_cases import F32, F64, check, signatures  # noqa: E402 - patches the device

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
from fastloss import _elementwise  # noqa: E402
from fastloss.registry import LOSSES  # noqa: E402


def _specs():
    for name in OTHER_REFERENCES:
        declaration = LOSSES[name].declaration
        if declaration is None:
            continue
        spec = _elementwise.spec(*declaration.kernel)
        for flags in itertools.product((False, True), repeat=len(spec.flags)):
            yield pytest.param(spec, flags, id=f"{name}-{''.join(str(int(f)) for f in flags)}")


SPECS = list(_specs())


def test_there_are_specs():
    assert {p.values[0].name for p in SPECS} >= {"hinge_embedding", "soft_margin"}


@pytest.mark.parametrize("spec, flags", SPECS)
def test_spec_kernels(spec, flags):
    module = cuda_factory.kernels(spec, flags, False)
    f32, f64 = signatures(spec, False, F32), signatures(spec, False, F64)
    check(module.reduce_value_grad, f32["reduce_value_grad"])
    check(module.map_value_grad, f32["map_value_grad"])
    check(module.reduce_value, f64["reduce_value"])
    check(module.map_value, f64["map_value"])
