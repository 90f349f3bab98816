"""The full vector width of the CPU for fastloss's kernels.

LLVM's tuning for most AVX-512 cores (Skylake-X to Sapphire Rapids, Zen 4) sets
``prefer-256-bit``: its loop vectoriser keeps vectors at 256 bits on a CPU that has 512-bit
registers, because a few 512-bit instructions lower the clock of older Intel cores for the whole
program. For a kernel that streams memory and spends its time in ``exp``/``log`` polynomials the
full width pays (measured on such a core: cross-entropy forward+backward from 28-30% to 59-63%
of the triad bandwidth, log-cosh from 68% to 78%, with ``NUMBA_CPU_FEATURES`` set by hand to
the host's features plus ``-prefer-256-bit``).

:func:`full_width` asks for it per function instead of per process: called in a kernel (and in
the body of each ``prange`` loop, which Numba compiles as a function of its own, and in each
helper that holds a loop: Numba optimises a callee's own module, loops vectorised, before it is
inlined into its caller), it sets LLVM's
function attribute ``"prefer-vector-width"="512"``, which overrides the tuning for that function
only. Nothing else in the process changes (the user's own Numba code keeps its width, and Numba's
target machine is untouched). On a CPU without AVX-512 the attribute has no effect: the widest
legal vector is the CPU's own. The elementwise kernels' bits do not change with the width: every
sum follows the lane contract of :mod:`fastloss.kernels.reduction`, and element math is the same
IEEE operations at any width. (The softmax row kernels still sum inside a row by reassociation,
so theirs do, until they move onto the row factory.)
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

ATTRIBUTE = '"prefer-vector-width"="512"'


@intrinsic
def full_width(typingctx):
    """Mark the function being compiled to use the CPU's full vector width (no-op value)."""

    def codegen(context, builder, signature, args):
        # llvmlite checks function attributes against a list of keywords; a string attribute
        # with a value is valid LLVM IR and goes into the set as it is printed. Only for CPU
        # code: a helper compiled again by the CUDA target stays as it is.
        if "nvptx" not in (builder.module.triple or ""):
            set.add(builder.function.attributes, ATTRIBUTE)
        return context.get_dummy_value()

    return types.none(), codegen


def with_full_width(source: str) -> str:
    """Generated kernel source with ``full_width()`` as the first statement of every top-level
    function and of every ``prange`` body (the module must import :func:`full_width`)."""
    lines = []
    for line in source.splitlines():
        lines.append(line)
        stripped = line.lstrip()
        if line.startswith("def ") or (stripped.startswith("for ") and " in prange(" in line):
            indent = len(line) - len(stripped) + 4
            lines.append(" " * indent + "full_width()")
    return "\n".join(lines) + "\n"
