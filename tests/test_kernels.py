"""The generated CPU kernels themselves: every spec's fused loop vectorises, calls nothing.

A point function left as a call, or a libm call in the loop, costs a factor of 3-10 in speed
without changing a single value, so no value test would notice it.
"""

import re

import numpy as np
import pytest
from numba import njit

from fastloss.kernels import elementwise, regression
from fastloss.kernels._jit import KERNEL_OPTIONS

SPECS = [
    value for value in vars(regression).values() if isinstance(value, elementwise.ElementwiseSpec)
]


def _flag_sets(spec):
    count = len(spec.flags)
    return [tuple(bool(bits >> i & 1) for i in range(count)) for bits in range(2**count)]


CASES = [
    pytest.param(spec, flags, id=f"{spec.name}-{''.join(str(int(f)) for f in flags)}")
    for spec in SPECS
    for flags in _flag_sets(spec)
]


def test_every_regression_spec_is_covered():
    assert {s.name for s in SPECS} >= {"mse", "l1", "huber", "poisson_nll", "log_cosh"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("spec", "flags"), CASES)
def test_fused_loop_vectorises_without_calls(spec, flags, dtype):
    module = elementwise.kernels(spec, flags)
    # A fresh, uncached compilation of the generated kernel, so its LLVM IR can be inspected.
    kernel = njit(**dict(KERNEL_OPTIONS, cache=False))(module.reduce_value_grad_serial.py_func)
    n = 64
    arrays = [np.linspace(0.5, 2.0, n).astype(dtype) for _ in range(spec.arrays)]
    params = [np.dtype(dtype).type(0.5) for _ in spec.params]
    grads = [np.empty(n, dtype) for _ in spec.grads]
    kernel(*arrays, *params, np.dtype(dtype).type(1.0), *grads)
    ir = kernel.inspect_llvm(kernel.signatures[0])
    scalar = "float" if dtype == "float32" else "double"
    assert any(f"<{lanes} x {scalar}>" in ir for lanes in (2, 4, 8, 16)), "loop not vectorised"
    # Point functions (mangled ``...8fastloss7kernels...``) and libm / LLVM transcendentals.
    libm = re.compile(r"@(llvm\.)?(exp|log|log1p|pow)(f|\.)")
    calls = [
        line.strip()
        for line in ir.splitlines()
        if " call " in line and ("8fastloss7kernels" in line or libm.search(line))
    ]
    assert not calls, f"calls left in the kernel: {calls[:3]}"
