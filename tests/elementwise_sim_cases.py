"""The CUDA path of the losses of ``test_elementwise.py`` under Numba's CUDA simulator.

Run by ``tests/test_elementwise.py`` in a pytest process of its own (``NUMBA_ENABLE_CUDASIM=1``
must be set before Numba is imported; the name keeps the file out of the normal collection);
by hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/elementwise_sim_cases.py

The losses come from the registry (``conftest.OTHER_REFERENCES``); their device kernels are
generated from the same ``ElementwiseSpec`` as the CPU ones. Every device result is compared
with the CPU result of the same public call (itself tested against torch), with the
simulator's launch shape of ``cuda_sim_cases.py`` (8 threads x 4 items: the 45 elements here
span two blocks).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from conftest import OTHER_REFERENCES, REDUCTIONS, TABLE, loss_options, make_case  # noqa: E402
from cuda_sim_cases import SHAPE, assert_close, host  # noqa: E402 - also the launch shape
from numba import cuda  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
N = int(np.prod(SHAPE))


def _device(value):
    return cuda.to_device(value) if isinstance(value, np.ndarray) else value


def _both(name, arrays, kwargs, **options):
    """The public call on the host and on the device: ``(cpu, gpu)``."""
    function = TABLE[name].function
    cpu = function(**arrays, **kwargs, **options)
    gpu = function(
        **{k: _device(v) for k, v in arrays.items()},
        **{k: _device(v) for k, v in kwargs.items()},
        **options,
    )
    return cpu, gpu


def _compare(cpu, gpu, dtype, return_grad):
    if not return_grad:
        cpu, gpu = (cpu, None), (gpu, None)
    assert hasattr(gpu[0], "copy_to_host"), f"expected a device array, got {type(gpu[0])}"
    loss = host(gpu[0])
    assert loss.dtype == np.asarray(cpu[0]).dtype
    assert_close(loss, cpu[0], dtype, N, "loss")
    if return_grad:
        assert hasattr(gpu[1], "copy_to_host"), "gradient not on the device"
        assert host(gpu[1]).dtype == cpu[1].dtype
        assert_close(host(gpu[1]), cpu[1], dtype, N, "grad")


@pytest.mark.parametrize("return_grad", [False, True], ids=["value", "grad"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, option", loss_options(OTHER_REFERENCES))
def test_matches_cpu(name, option, dtype, reduction, return_grad):
    arrays, kwargs = make_case(name, option, SHAPE, dtype, seed=5)
    arrays["input"].flat[3] = np.nan
    cpu, gpu = _both(name, arrays, kwargs, reduction=reduction, return_grad=return_grad)
    _compare(cpu, gpu, dtype, return_grad)


@pytest.mark.parametrize("name", OTHER_REFERENCES)
def test_out_is_input_and_broadcast_target(name):
    arrays, kwargs = make_case(name, TABLE[name].options[0], SHAPE, np.float32, seed=6)
    want, want_grad = TABLE[name].function(**arrays, **kwargs, return_grad=True)
    x_d = cuda.to_device(arrays["input"])
    loss, grad = TABLE[name].function(
        x_d, cuda.to_device(arrays["target"]), **kwargs, return_grad=True, out=x_d
    )
    assert grad is x_d
    assert_close(host(loss), want, np.float32, N, "loss")
    assert_close(host(x_d), want_grad, np.float32, N, "grad")
    arrays["target"] = np.ascontiguousarray(arrays["target"][:1])  # (1, 9) against (5, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu, gpu = _both(name, arrays, kwargs, reduction="sum", return_grad=True)
    _compare(cpu, gpu, np.float32, True)


@pytest.mark.parametrize("shape", [(0,), (2, 0, 3)], ids=["0", "2x0x3"])
@pytest.mark.parametrize("name", OTHER_REFERENCES)
def test_empty(name, shape):
    arrays, kwargs = make_case(name, TABLE[name].options[0], shape, np.float32)
    for reduction in REDUCTIONS:
        cpu, gpu = _both(name, arrays, kwargs, reduction=reduction, return_grad=True)
        np.testing.assert_equal(host(gpu[0]), cpu[0])
        assert host(gpu[1]).shape == shape


@pytest.mark.parametrize("name", OTHER_REFERENCES)
def test_return_hess_is_refused_on_the_device(name):
    x = cuda.to_device(np.linspace(0.1, 0.9, 12))
    with pytest.raises(NotImplementedError, match="return_hess"):
        TABLE[name].function(x, x, return_hess=True)
