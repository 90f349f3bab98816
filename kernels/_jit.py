"""Compilation options and the constants of the reduction contract, shared by every kernel.

Point functions and elementwise kernels are compiled without fast-math flags: an element's
loss and gradient are the IEEE results of the operations as written, whichever loop computes
them. With ``reassoc``, ``contract`` or ``arcp`` LLVM regroups, fuses or turns divisions into
reciprocals depending on the code around an expression (how many uses a product has, whether
the gradient is computed beside the loss, whether the loop is the vector body or its scalar
remainder), so the same element could round differently in the forward-only and the fused
kernel, or at a chunk's edge (measured: log-cosh's factor ``1/2 + e/2`` differed by an ulp
between two loops). The vectorisable math of :mod:`fastloss.kernels.vmath` keeps ``contract``
inside its own polynomials, a fixed pattern that does not depend on its caller. No set holds
``nnan``/``ninf``: NaN and inf propagate as in torch, and ``x != x`` stays a valid NaN test.

The additions of a reduction are those of the lane intrinsics and tree helpers of
:mod:`fastloss.kernels.reduction`, in the contract's order.

This module imports nothing from Numba at import time: fastloss reads the constants without
loading Numba.
"""

from __future__ import annotations

import types

# The softmax family's row kernels, until they move onto the row factory: their sums inside a
# row still vectorise by reassociation.
ROW_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Options for point functions and scalar helpers, callable from CPU kernels and, compiled again
# by the CUDA target, from GPU kernels. Not cached on their own: they are compiled into the
# kernels, whose cache directory is keyed by a hash of their code. A cached callee would be
# reused by Numba after an edit to a function it calls in another module (vmath), silently
# carrying stale code into freshly compiled kernels.
# forceinline: a point function that LLVM leaves as a call (log-cosh with its inlined exp and
# log1p is big enough) stops the kernel's loop from vectorising.
# fastmath=False is explicit: Numba compiles a callee that leaves it unset with its caller's
# flags (``inherit_if_not_set``), which would bring a row kernel's ``reassoc`` in.
POINT_OPTIONS = {"fastmath": False, "error_model": "numpy", "forceinline": True}
ROW_POINT_OPTIONS = dict(POINT_OPTIONS, fastmath=ROW_FASTMATH)

# Options for the CPU kernels; ``parallel`` is added per kernel.
KERNEL_OPTIONS = {"fastmath": False, "error_model": "numpy", "cache": True, "nogil": True}
ROW_KERNEL_OPTIONS = dict(KERNEL_OPTIONS, fastmath=ROW_FASTMATH)

# The reduction contract (kernels/reduction.py): lanes per segment, elements per segment.
LANES = 16
SEGMENT = 256
# Segments per parallel task (aligned to global multiples): 65536 elements.
TASK_SEGMENTS = 256
# Nodes a reduction stack can hold: a run of segments is at most two descending runs of
# complete aligned nodes, one per bit of a 64-bit segment index each.
STACK = 130


def serial_and_parallel(func, options: dict) -> tuple:
    """The serial and the ``prange`` kernel of ``func``, compiled with ``options``.

    Each is compiled from its own copy of the function, named ``<name>_serial`` and
    ``<name>_parallel``: Numba's cache keys an entry by the function's file, qualified name,
    bytecode and signature, not by its ``parallel`` flag, so two dispatchers of one function
    would share entries and a warm cache would serve the serial code to the parallel kernel
    (measured: the parallel cross-entropy kernel loaded the serial one's entry).
    """
    from numba import njit

    kernels = []
    for parallel in (False, True):
        name = f"{func.__name__.lstrip('_')}_{'parallel' if parallel else 'serial'}"
        code = func.__code__.replace(co_name=name)
        if hasattr(code, "co_qualname"):
            code = code.replace(co_qualname=name)
        copy = types.FunctionType(code, func.__globals__, name, func.__defaults__)
        copy.__qualname__ = name
        copy.__module__ = func.__module__
        copy.__doc__ = func.__doc__
        kernels.append(njit(parallel=parallel, **options)(copy))
    return tuple(kernels)
