"""fastloss's CPU kernels use the full vector width of an AVX-512 CPU on their own.

LLVM's tuning for AVX-512 cores prefers 256-bit vectors; kernels/vector_width.py overrides it
per function. The kernels are compiled here for an AVX-512 target (in a subprocess, compile
only: this machine need not run AVX-512 code) and their assembly must hold 512-bit arithmetic,
in the elementwise kernels and in the row kernels, serial and parallel (a ``prange`` body is a
function of its own). The bits do not depend on the width: tests/test_reduction.py.
"""

import json
import os
import subprocess
import sys

import pytest

AVX512 = "+avx512f,+avx512bw,+avx512dq,+avx512vl,+avx512cd,+avx2,+fma,+avx,+sse4.2,+bmi2,+f16c"

CODE = r"""
import json, re, sys
import numba
import numpy as np
import fastloss
from fastloss import _elementwise

found = {}

class Compiled(Exception):
    pass

def compile_only(module, kind, n, args):
    sig = tuple(numba.typeof(a) for a in args)
    for variant in ("_serial", "_parallel"):
        kernel = getattr(module, kind + variant)
        kernel.compile(sig)
        asm = kernel.inspect_asm(sig)
        found[kind + variant] = [
            len(re.findall(r"\bv(?:add|sub|mul|fmadd\w*)p[sd]\s[^\n]*zmm", asm)),
            len(re.findall(r"\bv(?:add|sub|mul|fmadd\w*)p[sd]\s[^\n]*ymm", asm)),
        ]
    raise Compiled

x = np.linspace(-2, 2, 4096, dtype=np.float32)
calls = [
    lambda: fastloss.mse_loss(x, x[::-1].copy(), return_grad=True),
    lambda: fastloss.log_cosh_loss(x, x[::-1].copy()),
    lambda: fastloss.cross_entropy(x.reshape(64, 64), np.arange(64) % 64, return_grad=True),
]
_elementwise._launch = compile_only
for call in calls:
    try:
        call()
    except Compiled:
        pass
print(json.dumps(found))
"""


def _compile_for(cpu: str, features: str, tmp_path) -> dict:
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features)
    env["FASTLOSS_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("cpu", ["skylake-avx512", "znver4"])
def test_kernels_use_512_bit_vectors_on_avx512(cpu, tmp_path):
    found = _compile_for(cpu, AVX512, tmp_path)
    assert set(found) >= {
        "reduce_value_grad_serial",
        "reduce_value_grad_parallel",
        "reduce_value_serial",
        "reduce_value_parallel",
    }
    # the cross-entropy's row kernels (value_grad_rows_*) come through the same launcher
    assert len(found) >= 6, found
    for kernel, (zmm, _) in found.items():
        assert zmm > 0, (kernel, found)
