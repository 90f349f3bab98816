"""Compilation options shared by every kernel.

``FASTMATH`` allows reassociation and contraction (so float64 reductions vectorise) but not
``nnan``/``ninf``: NaN and inf propagate as in torch, and ``x != x`` stays a valid NaN test.
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Options for point functions and scalar helpers, callable from CPU kernels and, compiled again
# by the CUDA target, from GPU kernels.
POINT_OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}

# Options for the CPU kernels; ``parallel`` is added per kernel.
KERNEL_OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True, "nogil": True}
