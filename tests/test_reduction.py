"""The reduction contract: kernel bits against the contract written out in Python, for every
elementwise spec, any chunking, and in subprocesses for thread counts and instruction sets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from contract import contract_sum
from numba import njit

from fastloss import _elementwise
from fastloss._reduction import Partial, accumulate, fresh_state
from fastloss.kernels import binary, divergence, elementwise, regression, sums
from fastloss.kernels.vmath import log

_vlog = njit(lambda x: log(x))


def _specs():
    for family in (regression, binary, divergence, sums):
        for spec in vars(family).values():
            if isinstance(spec, elementwise.ElementwiseSpec):
                yield pytest.param(spec, id=spec.name)


def _inputs(spec, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(0.05, 0.95, n).astype(dtype) for _ in range(spec.arrays)]
    params = [np.dtype(dtype).type(0.5) for _ in spec.params]
    return arrays, params


def _flags(spec):
    return tuple(False for _ in spec.flags)


@pytest.mark.parametrize("spec", list(_specs()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_sum_is_the_contract_sum(spec, dtype):
    """The fused kernel's sum equals the contract applied, in Python, to the element values
    the kernel computes (partial segment, several segments, two parallel tasks)."""
    n = 65536 + 3 * 256 + 77
    module = elementwise.kernels(spec, _flags(spec))
    arrays, params = _inputs(spec, n, dtype)
    scale = np.dtype(dtype).type(1.0)
    v, f = np.empty(n, dtype), np.empty(n, dtype)
    grads = [np.empty(n, dtype) for _ in spec.grads]
    module.stage_value_grad(*arrays, *params, scale, *grads, v, f)
    want = contract_sum(v, f if spec.log_factor else None, log=_vlog)
    for kind, extra in (("reduce_value", ()), ("reduce_value_grad", (scale, *grads))):
        for variant in ("serial", "parallel"):
            kernel = getattr(module, f"{kind}_{variant}")
            _, total = kernel(*arrays, *params, *extra, 0, *fresh_state(), 0)
            assert total == want, (kind, variant, total, want)


CUTS = [0, 1, 2, 255, 256, 257, 1031, 4099, 65536 - 1, 65536 + 255, 70001]


@pytest.mark.parametrize("spec", list(_specs()))
def test_any_chunking_and_merge_tree_gives_the_same_bits(spec):
    n = CUTS[-1]
    module = elementwise.kernels(spec, _flags(spec))
    arrays, params = _inputs(spec, n, np.float32, seed=1)
    whole = Partial(0, spec.log_factor)
    accumulate(whole, module, "reduce_value", n, tuple(arrays), tuple(params))
    want = whole.total()
    # in order, one state
    chunked = Partial(0, spec.log_factor)
    for lo, hi in zip(CUTS, CUTS[1:], strict=False):
        accumulate(chunked, module, "reduce_value", hi - lo, tuple(a[lo:hi] for a in arrays),
                   tuple(params))  # fmt: skip
    assert chunked.total() == want
    # independent states, merged in a tree that keeps the order
    parts = []
    for lo, hi in zip(CUTS, CUTS[1:], strict=False):
        part = Partial(lo, spec.log_factor)
        accumulate(part, module, "reduce_value", hi - lo, tuple(a[lo:hi] for a in arrays),
                   tuple(params))  # fmt: skip
        parts.append(part)
    while len(parts) > 1:
        merged = []
        for i in range(0, len(parts), 2):
            if i + 1 < len(parts):
                parts[i].merge(parts[i + 1])
            merged.append(parts[i])
        parts = merged
    assert parts[0].total() == want


def test_merge_refuses_a_gap():
    module = elementwise.kernels(regression.MSE, ())
    x = np.ones(10, np.float32)
    a, b = Partial(0), Partial(11)
    accumulate(a, module, "reduce_value", 10, (x, x), ())
    accumulate(b, module, "reduce_value", 10, (x, x), ())
    with pytest.raises(ValueError, match="starts at element 10"):
        a.merge(b)


def test_weight_sum_follows_the_contract():
    w = np.random.default_rng(2).random(70001)
    assert _elementwise.sum_array(w) == contract_sum(w)


# --- the same bits in other processes: threads, instruction sets ------------------------------

DIGESTS = r"""
import json, sys, warnings
import numpy as np
import fastloss
from fastloss import _demo
from fastloss.registry import LOSSES
warnings.simplefilter("ignore")
n = int(sys.argv[1])
out = {}
for name, info in LOSSES.items():
    for dtype in (np.float32, np.float64):
        inputs = info.make_inputs(np.random.default_rng(0), n, dtype)
        reductions = ["mean", "sum"] + (["batchmean"] if name == "kl_div" else [])
        for reduction in reductions:
            value, grad = info.function(**inputs, reduction=reduction, return_grad=True)
            g = grad[0] if isinstance(grad, tuple) else grad
            digest = np.asarray(value).tobytes().hex() + ":" + str(hash(np.asarray(g).tobytes()))
            out[f"{name}-{np.dtype(dtype).name}-{reduction}"] = digest
print(json.dumps(out))
"""


def _digests(tmp_path, **env):
    environment = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path), PYTHONHASHSEED="0", **env)
    for name in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_NUM_THREADS"):
        if name not in env:
            environment.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", DIGESTS, str((1 << 20) + 4097)],
        env=environment, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(3600)
def test_bits_do_not_depend_on_threads_or_instruction_set(tmp_path):
    two = _digests(tmp_path, NUMBA_NUM_THREADS="2")
    one = _digests(tmp_path, NUMBA_NUM_THREADS="1")
    assert one == two
    haswell = _digests(tmp_path, NUMBA_NUM_THREADS="2", NUMBA_CPU_NAME="haswell")
    assert haswell == two
