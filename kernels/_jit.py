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

# Options for the CPU kernels; ``parallel`` is added per kernel.
KERNEL_OPTIONS = {"fastmath": False, "error_model": "numpy", "cache": True, "nogil": True}

# The reduction contract (kernels/reduction.py): lanes per segment, elements per segment.
LANES = 16
SEGMENT = 256
# Segments per parallel task (aligned to global multiples): 65536 elements.
TASK_SEGMENTS = 256
# Nodes a reduction stack can hold: a run of segments is at most two descending runs of
# complete aligned nodes, one per bit of a 64-bit segment index each.
STACK = 130
