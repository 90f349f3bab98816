"""The reduction contract written out in plain Python, from its definition
(kernels/reduction.py): the reference the kernels' bits are checked against."""

import math

import numpy as np

from fastloss.kernels._jit import LANES, SEGMENT

LOG_FACTOR_SCALE = math.log(1.5)


def _halving(lanes, combine):
    lanes = list(lanes)
    while len(lanes) > 1:
        half = len(lanes) // 2
        lanes = [combine(lanes[i], lanes[i + half]) for i in range(half)]
    return lanes[0]


def segment_value(v, f=None, log=math.log) -> float:
    """One segment: lane ``l`` adds ``v[l], v[l + 16], ...`` in float64 from 0, the lanes
    combine in the halving tree; a log factor adds ``log(prod(1.5 f)) - m log 1.5``."""
    lanes = [0.0] * LANES
    for i, x in enumerate(v):
        lanes[i % LANES] += float(x)
    value = _halving(lanes, lambda a, b: a + b)
    if f is not None:
        products = [1.0] * LANES
        for i, x in enumerate(f):
            products[i % LANES] *= float(x) * 1.5
        value += log(_halving(products, lambda a, b: a * b)) - len(f) * LOG_FACTOR_SCALE
    return value


def tree(values):
    """Segments combined in the binary tree over their indices (a node with only a left child
    is that child)."""
    values = list(values)
    if not values:
        return 0.0
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]  # fmt: skip
    return values[0]


def contract_sum(v, f=None, log=math.log) -> float:
    """The contract's sum of element values ``v`` (and log factors ``f``) from element 0."""
    v = np.asarray(v)
    segments = [
        segment_value(v[i : i + SEGMENT], None if f is None else f[i : i + SEGMENT], log)
        for i in range(0, v.size, SEGMENT)
    ]
    return tree(segments)
