"""The generated CPU kernels themselves: every spec's fused loop vectorises, calls nothing,
with and without the second derivative.

A point function left as a call, or a libm call in the loop, costs a factor of 3-10 in speed
without changing a single value, so no value test would notice it. Every spec of every family
is checked: regression specs in float32 and float64, the others in float32 (a lost vector width
costs most there, and each uncached compilation here costs a second or two).
"""

import re

import numpy as np
import pytest
from numba import njit

from fastloss._reduction import fresh_state
from fastloss.kernels import binary, divergence, elementwise, regression, sums
from fastloss.kernels._jit import KERNEL_OPTIONS


def _specs(module):
    return [v for v in vars(module).values() if isinstance(v, elementwise.ElementwiseSpec)]


def _flag_sets(spec):
    count = len(spec.flags)
    return [tuple(bool(bits >> i & 1) for i in range(count)) for bits in range(2**count)]


CASES = [
    pytest.param(
        spec, flags, dtype, id=f"{spec.name}-{''.join(str(int(f)) for f in flags)}-{dtype}"
    )
    for family, dtypes in [
        (regression, ("float32", "float64")),
        (binary, ("float32",)),
        (divergence, ("float32",)),
        (sums, ("float32", "float64")),
    ]  # fmt: skip
    for spec in _specs(family)
    for flags in _flag_sets(spec)
    for dtype in dtypes
]


def test_every_spec_is_covered():
    names = {case.values[0].name for case in CASES}
    assert names >= {"mse", "l1", "huber", "poisson_nll", "log_cosh", "bce", "kl_div", "sum"}


def test_every_project_spec_has_a_second_derivative():
    specs = [spec for family in (binary, divergence, regression, sums) for spec in _specs(family)]
    assert specs and all(spec.hess for spec in specs)


@pytest.mark.parametrize("kind", ["reduce_value_grad", "reduce_value_grad_hess"])
@pytest.mark.parametrize(("spec", "flags", "dtype"), CASES)
def test_fused_loop_vectorises_without_calls(spec, flags, dtype, kind):
    """The gradient kernel (the second derivative unpacked and dropped) and the kernel that
    writes the second derivative too."""
    module = elementwise.kernels(spec, flags)
    # A fresh, uncached compilation of the generated kernel, so its LLVM IR can be inspected.
    function = getattr(module, f"{kind}_serial").py_func
    kernel = njit(**dict(KERNEL_OPTIONS, cache=False))(function)
    n = 600
    arrays = [np.linspace(0.1, 0.9, n).astype(dtype) for _ in range(spec.arrays)]
    params = [np.dtype(dtype).type(0.5) for _ in spec.params]
    grads = [np.empty(n, dtype) for _ in spec.grads]
    if kind.endswith("hess"):
        grads.append(np.empty(n, dtype))
    kernel(*arrays, *params, np.dtype(dtype).type(1.0), *grads, 0, *fresh_state(), 0)
    ir = kernel.inspect_llvm(kernel.signatures[0])
    # The element arithmetic in vectors: <16 x double> alone is the reduction's lanes.
    if dtype == "float32":
        assert re.search(r"<(2|4|8|16) x float>", ir), "loop not vectorised"
    else:
        assert re.search(r"<(2|4|8) x double>", ir), "loop not vectorised"
    # Point functions (mangled ``...8fastloss7kernels...``) and libm / LLVM transcendentals.
    libm = re.compile(r"@(llvm\.)?(exp|log|log1p|pow)(f|\.)")
    calls = [
        line.strip()
        for line in ir.splitlines()
        if " call " in line
        and ("8fastloss7kernels" in line or libm.search(line))
        and "9reduction" not in line  # the tree helpers of kernels/reduction.py, per segment
    ]
    assert not calls, f"calls left in the kernel: {calls[:3]}"
