"""Compilation options shared by every kernel.

``FASTMATH`` allows reassociation and contraction (so float64 reductions vectorise) but not
``nnan``/``ninf``: NaN and inf propagate as in torch, and ``x != x`` stays a valid NaN test.
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Options for point functions and scalar helpers, callable from CPU kernels and, compiled again
# by the CUDA target, from GPU kernels. Not cached on their own: they are compiled into the
# kernels, whose cache directory is keyed by a hash of every kernel source. A cached callee
# would be reused by Numba after an edit to a function it calls in another module (vmath),
# silently carrying stale code into freshly compiled kernels.
# forceinline: a point function that LLVM leaves as a call (log-cosh with its inlined exp and
# log1p is big enough) stops the kernel's loop from vectorising.
POINT_OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy", "forceinline": True}

# Options for the CPU kernels; ``parallel`` is added per kernel.
KERNEL_OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True, "nogil": True}
