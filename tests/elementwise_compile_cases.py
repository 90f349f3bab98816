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

# the lowering of every kernel kind (cuda_compile_cases, imported by it, patches the device)
from cuda_binary_compile_cases import test_spec_kernels as lowers  # noqa: E402

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
    lowers(spec, flags)
