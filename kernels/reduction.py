"""The reduction contract: how every loss adds up its elements, the same bits everywhere.

A loss's sum is a function of the element losses and their global positions, nothing else:

- element ``i`` belongs to segment ``i // SEGMENT`` and, inside it, to lane ``i % LANES``;
- each lane of a segment accumulates its elements in float64, in index order, from 0;
- a segment's lanes combine in a fixed halving tree (lane ``l`` with lane ``l + 8``, then
  ``+ 4``, ``+ 2``, ``+ 1``): the segment's value;
- segments combine in a fixed binary tree over their global indices: node ``(h, k)`` is the sum
  of segments ``[k 2**h, (k + 1) 2**h)``, the sum of its two children where both hold segments,
  its left child where only that one does. The root is the loss's sum.

Nothing in it depends on the thread count, on which kernel (serial or parallel) ran, on how the
elements were cut into chunks, or on the CPU's vector width: a lane is an element of a
``<16 x double>`` vector (:data:`lanes_type`) whose additions LLVM may not reorder (the kernels
are compiled without ``reassoc``), and it is the same 16 lanes on AVX2, AVX-512 or SSE.

The tree over segments is what makes chunks composable: a contiguous run of segments is a list
of complete aligned nodes (a stack, as a binary counter holds it), and pushing the nodes of the
next run onto it, combining each node with its left sibling as soon as both are there, gives
the nodes that the whole run would have given. The root of a run that starts at element 0 is
the right fold of its stack, ``c1 + (c2 + (c3 + ...))``, which is exactly the tree above.

A segment in progress is its lane vector (two, for a log-factor loss: the lanes of ``v`` and
the lanes of the product of ``FACTOR_SCALE * f``, see
:class:`~fastloss.kernels.elementwise.ElementwiseSpec`), kept in a float64 ``state`` array of
``2 * LANES`` entries between chunks. A log-factor segment's value is
``total(v lanes) + (log(product(f lanes)) - m log(FACTOR_SCALE))`` for its ``m`` elements.

Row losses take a row as an element (its loss in float64); data-dependent denominators (weight
sums) are reduced by the same contract, as a loss whose element values are the weights.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, models, register_model

from fastloss.kernels import _cache
from fastloss.kernels._jit import LANES, SEGMENT
from fastloss.kernels.vmath import log

# Scale of the logarithmic factors in a segment's product: 1.5 f lies in [0.75, 1.5], so a
# lane's product of SEGMENT / LANES factors, and the product of the 16 lanes, stay far inside
# float64's range.
FACTOR_SCALE = 1.5
LOG_FACTOR_SCALE = math.log(FACTOR_SCALE)

_VECTOR = ir.VectorType(ir.DoubleType(), LANES)
_I32 = ir.IntType(32)


class LanesType(types.Type):
    """The lanes of a segment in progress: a ``<16 x double>`` LLVM vector."""

    def __init__(self) -> None:
        super().__init__(name=f"Lanes{LANES}")


lanes_type = LanesType()


@register_model(LanesType)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _splat(builder, value):
    vector = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, _I32(0))
    return builder.shuffle_vector(
        vector, vector, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    )


def _row(context, builder, array_type, array, start):
    """``array[start:start + LANES]`` as a float64 vector (one unaligned vector load)."""
    ary = context.make_array(array_type)(context, builder, array)
    element = context.get_value_type(array_type.dtype)
    pointer = builder.gep(ary.data, [start])
    pointer = builder.bitcast(pointer, ir.VectorType(element, LANES).as_pointer())
    row = builder.load(pointer, align=array_type.dtype.bitwidth // 8)
    if array_type.dtype != types.float64:
        row = builder.fpext(row, _VECTOR)
    return row


def _tuple_vector(context, builder, tuple_type, value):
    vector = ir.Constant(_VECTOR, ir.Undefined)
    for lane in range(LANES):
        x = builder.extract_value(value, lane)
        x = context.cast(builder, x, tuple_type.types[lane], types.float64)
        vector = builder.insert_element(vector, x, _I32(lane))
    return vector


def _is_row_array(array) -> bool:
    return (
        isinstance(array, types.Array)
        and array.ndim == 1
        and array.layout == "C"
        and array.dtype in (types.float32, types.float64)
    )


def _is_lane_tuple(value) -> bool:
    return (
        isinstance(value, types.BaseTuple)
        and len(value.types) == LANES
        and all(isinstance(t, types.Float) for t in value.types)
    )


@intrinsic
def lanes_fill(typingctx, value):
    """Every lane set to ``value`` (a float64)."""
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return _splat(builder, context.cast(builder, args[0], signature.args[0], types.float64))

    return lanes_type(value), codegen


@intrinsic
def lanes_add_row(typingctx, lanes, array, start):
    """``lanes + array[start:start + LANES]`` lane by lane (float32 widened exactly)."""
    if lanes != lanes_type or not _is_row_array(array) or not isinstance(start, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        row = _row(context, builder, signature.args[1], args[1], args[2])
        return builder.fadd(args[0], row)

    return lanes_type(lanes, array, start), codegen


@intrinsic
def lanes_mul_row(typingctx, lanes, array, start, scale):
    """``lanes * (array[start:start + LANES] * scale)`` lane by lane."""
    if lanes != lanes_type or not _is_row_array(array) or not isinstance(start, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        row = _row(context, builder, signature.args[1], args[1], args[2])
        factor = _splat(builder, context.cast(builder, args[3], signature.args[3], types.float64))
        return builder.fmul(args[0], builder.fmul(row, factor))

    return lanes_type(lanes, array, start, scale), codegen


@intrinsic
def lanes_add_values(typingctx, lanes, values):
    """``lanes + values`` for a tuple of ``LANES`` floats (widened exactly)."""
    if lanes != lanes_type or not _is_lane_tuple(values):
        return None

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], _tuple_vector(context, builder, signature.args[1], args[1]))

    return lanes_type(lanes, values), codegen


@intrinsic
def lanes_mul_values(typingctx, lanes, values, scale):
    """``lanes * (values * scale)`` for a tuple of ``LANES`` floats."""
    if lanes != lanes_type or not _is_lane_tuple(values):
        return None

    def codegen(context, builder, signature, args):
        vector = _tuple_vector(context, builder, signature.args[1], args[1])
        factor = _splat(builder, context.cast(builder, args[2], signature.args[2], types.float64))
        return builder.fmul(args[0], builder.fmul(vector, factor))

    return lanes_type(lanes, values, scale), codegen


@intrinsic
def lanes_add_at(typingctx, lanes, lane, value):
    """``lanes`` with ``value`` (widened exactly) added to lane ``lane``."""
    if lanes != lanes_type or not isinstance(lane, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        index = builder.trunc(args[1], _I32) if args[1].type.width > 32 else args[1]
        x = context.cast(builder, args[2], signature.args[2], types.float64)
        old = builder.extract_element(args[0], index)
        return builder.insert_element(args[0], builder.fadd(old, x), index)

    return lanes_type(lanes, lane, value), codegen


@intrinsic
def lanes_mul_at(typingctx, lanes, lane, value, scale):
    """``lanes`` with lane ``lane`` multiplied by ``value * scale``."""
    if lanes != lanes_type or not isinstance(lane, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        index = builder.trunc(args[1], _I32) if args[1].type.width > 32 else args[1]
        x = context.cast(builder, args[2], signature.args[2], types.float64)
        factor = context.cast(builder, args[3], signature.args[3], types.float64)
        old = builder.extract_element(args[0], index)
        return builder.insert_element(args[0], builder.fmul(old, builder.fmul(x, factor)), index)

    return lanes_type(lanes, lane, value, scale), codegen


def _halving(builder, vector, combine):
    width = LANES
    while width > 1:
        half = width // 2
        low = builder.shuffle_vector(
            vector, vector, ir.Constant(ir.VectorType(_I32, half), list(range(half)))
        )
        high = builder.shuffle_vector(
            vector, vector, ir.Constant(ir.VectorType(_I32, half), list(range(half, width)))
        )
        vector = combine(low, high)
        width = half
    return builder.extract_element(vector, _I32(0))


@intrinsic
def lanes_sum(typingctx, lanes):
    """The lanes added in the fixed halving tree."""
    if lanes != lanes_type:
        return None

    def codegen(context, builder, signature, args):
        return _halving(builder, args[0], builder.fadd)

    return types.float64(lanes), codegen


@intrinsic
def lanes_product(typingctx, lanes):
    """The lanes multiplied in the fixed halving tree."""
    if lanes != lanes_type:
        return None

    def codegen(context, builder, signature, args):
        return _halving(builder, args[0], builder.fmul)

    return types.float64(lanes), codegen


@intrinsic
def lanes_load(typingctx, array, offset):
    """``array[offset:offset + LANES]`` of a float64 array as lanes."""
    if not _is_row_array(array) or array.dtype != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return _row(context, builder, signature.args[0], args[0], args[1])

    return lanes_type(array, offset), codegen


@intrinsic
def lanes_store(typingctx, lanes, array, offset):
    """Write ``lanes`` into ``array[offset:offset + LANES]`` (float64)."""
    if lanes != lanes_type or not _is_row_array(array) or array.dtype != types.float64:
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[1])(context, builder, args[1])
        pointer = builder.gep(ary.data, [args[2]])
        builder.store(args[0], builder.bitcast(pointer, _VECTOR.as_pointer()), align=8)
        return context.get_dummy_value()

    return types.none(lanes, array, offset), codegen


# --- the tree over segments ----------------------------------------------------------------

# fastmath=False explicitly, or a helper would take its calling kernel's flags.
_HELPER_OPTIONS = {"fastmath": False, "error_model": "numpy", "cache": _cache.enabled()}


@njit(**_HELPER_OPTIONS)
def push(levels, indices, values, depth, level, index, value):
    """Push node ``(level, index)`` of ``value`` onto a stack of ``depth`` nodes, combining it
    with its left sibling (and the result with its own, ...) as long as that is the top; return
    the new depth."""
    levels[depth] = level
    indices[depth] = index
    values[depth] = value
    depth += 1
    while (
        depth >= 2
        and levels[depth - 1] == levels[depth - 2]
        and indices[depth - 2] % 2 == 0
        and indices[depth - 1] == indices[depth - 2] + 1
    ):
        combined = values[depth - 2] + values[depth - 1]
        depth -= 1
        levels[depth - 1] += 1
        indices[depth - 1] //= 2
        values[depth - 1] = combined
    return depth


@njit(**_HELPER_OPTIONS)
def close(sums, products, count, log_factor):
    """The value of a segment of ``count`` elements from its lanes. Compiled without fast-math
    flags (as every helper here), so the kernels' ``reassoc`` cannot regroup it."""
    value = lanes_sum(sums)
    if log_factor:
        value += log(lanes_product(products)) - count * LOG_FACTOR_SCALE
    return value


@njit(**_HELPER_OPTIONS)
def segment_value(state, count, log_factor):
    """The value of a segment of ``count`` elements from its lanes in ``state``."""
    return close(lanes_load(state, 0), lanes_load(state, LANES), count, log_factor)


@njit(**_HELPER_OPTIONS)
def fold(levels, indices, values, depth, state, end, log_factor):
    """The sum of a run ``[0, end)``: its stack and the segment in progress at ``end``."""
    count = end % SEGMENT
    if count:
        scratch_levels = levels[: depth + 1].copy()
        scratch_indices = indices[: depth + 1].copy()
        scratch_values = values[: depth + 1].copy()
        value = segment_value(state, count, log_factor)
        depth = push(
            scratch_levels, scratch_indices, scratch_values, depth, 0, end // SEGMENT, value
        )
        return _right_fold(scratch_values, depth)
    return _right_fold(values, depth)


@njit(**_HELPER_OPTIONS)
def _right_fold(values, depth):
    if depth == 0:
        return 0.0
    total = values[depth - 1]
    for j in range(depth - 2, -1, -1):
        total = values[j] + total
    return total


@njit(**_HELPER_OPTIONS)
def append_values(state, position, v, f, log_factor, levels, indices, values, depth):
    """Continue the segment in progress at global ``position`` with the element values ``v``
    (and factors ``f``) that follow it; completed segments are pushed. Returns the new depth."""
    sums = lanes_load(state, 0)
    products = lanes_load(state, LANES)
    for i in range(v.size):
        p = position + i
        lane = p % LANES
        sums = lanes_add_at(sums, lane, v[i])
        if log_factor:
            products = lanes_mul_at(products, lane, f[i], FACTOR_SCALE)
        if (p + 1) % SEGMENT == 0:
            lanes_store(sums, state, 0)
            lanes_store(products, state, LANES)
            depth = push(
                levels,
                indices,
                values,
                depth,
                0,
                p // SEGMENT,
                segment_value(state, SEGMENT, log_factor),
            )
            sums = lanes_fill(0.0)
            products = lanes_fill(1.0)
    lanes_store(sums, state, 0)
    lanes_store(products, state, LANES)
    return depth
