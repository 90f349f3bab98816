"""The on-disk kernel cache under concurrent processes.

Numba's cache has a history of crashes when several processes compile into it at once (numba
issue 4807). fastloss writes its generated kernel modules atomically and lets Numba cache next
to them; here four processes start together on an empty cache directory, then four more run on
the now-warm one, and every process must succeed with the same bits.
"""

import os
import subprocess
import sys

CODE = """
import numpy as np
import fastloss

rng = np.random.default_rng(7)
x = rng.standard_normal(1_500_000).astype(np.float32)
t = rng.poisson(2.0, 1_500_000).astype(np.float32)
mse, grad = fastloss.mse_loss(x, t, return_grad=True)
poisson = fastloss.poisson_nll_loss(x, t)
hits = misses = 0
for module in fastloss._elementwise._modules.values():
    for name in dir(module):
        stats = getattr(getattr(module, name), "stats", None)
        if stats is not None:
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
print(float(mse).hex(), float(poisson).hex(), float(grad.sum(dtype=np.float64)).hex(), hits, misses)
"""


def _run_together(count: int, env: dict) -> list[list[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CODE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        lines.append(out.decode().split())
    return lines


def test_processes_compiling_into_an_empty_cache_at_once(tmp_path):
    env = dict(os.environ, FASTLOSS_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    cold = _run_together(4, env)
    warm = _run_together(4, env)
    digests = {tuple(line[:3]) for line in cold + warm}
    assert len(digests) == 1, digests
    generated = list(tmp_path.glob("kernels-*/*.py"))
    assert {p.stem for p in generated} >= {"mse", "poisson_nll_log_input1_full0"}
    assert list(tmp_path.glob("kernels-*/__pycache__/*.nbi")), "Numba wrote no cache index"
    assert not list(tmp_path.glob("kernels-*/*.tmp")), "a partial generated module was left"
    # The warm processes load every kernel from the cache and compile none.
    assert all(int(line[3]) > 0 and int(line[4]) == 0 for line in warm), warm
    assert all(int(line[3]) + int(line[4]) > 0 for line in cold), cold
