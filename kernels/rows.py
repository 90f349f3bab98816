"""The factory of row losses: one declaration, every CPU kernel.

A row loss reads rows of ``D`` values from one or more arrays (logits; logits and target
probabilities; two embeddings; an anchor, a positive and a negative) and gives one loss per row.
It is declared by a :class:`RowSpec`:

``sweeps``  passes over a row's columns, in order. Sweep ``s``'s point function gives ``count``
            values at a column; a ``"sum"`` sweep adds each over the row under the row contract
            below, a ``"max"`` sweep keeps the largest (in the input's precision; NaN wins).
``row``     the row's outputs (its float64 loss first) and a tuple of ``coefficients`` float64
            values for the gradient sweep, already multiplied by the gradient's scales.
``grad``    the gradient sweep's point function: the gradient of each input in ``grads`` at a
            column (a bare value for one).
``skip``    optional: whether a row is left out (its outputs 0, its gradient rows zeros).

The point functions' arguments, in order:

- a sweep: the column's value of every input and of every column array (class weights), the
  column index ``c``, the row's scalars (a class index, a label), the totals of the earlier
  sweeps (float64), the params, the flags;
- ``row``: the totals of every sweep, the row's scalars, the row's views of every input (to read
  one column, the target's), the column arrays, the gradient's scales (0 in the kernels without
  a gradient), the params, the flags;
- ``grad``: as a sweep up to the row's scalars, then (``staged``) the last sweep's values at the
  column as staged for its sums, the coefficients (in the input's precision), the params, the
  flags;
- ``skip``: the row's scalars, the params, the flags.

From that the factory writes a module (like :mod:`fastloss.kernels.elementwise`: a real file in
the cache directory, so ``cache=True`` works and a changed declaration is a new module) with
``value_rows`` and ``value_grad_rows``, each serial and parallel (``prange`` over tasks of rows).
Options that change the formula are compile-time flags (module constants ``FLAG_<NAME>``), so a
kernel carries no branch for an option it does not use; runtime scalars are arguments.

The row contract: a sum over a row's columns adds column ``c`` into float64 lane ``c % LANES``
in column order and combines the lanes in the fixed halving tree of
:func:`~fastloss.kernels.reduction.lanes_sum`. The values are computed in the input's precision
(the element loop vectorises at full width) and staged in a scratch row, then added a row of
``LANES`` at a time (the last padded with +0.0, which leaves a lane as it is). The bits of a
row's loss depend on its values only: not on the vector width, the thread count or the kernel
variant. Row losses are then reduced under the reduction contract, a row being an element.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import ModuleType

from fastloss.kernels._cache import code_hash
from fastloss.kernels.elementwise import check_flags, load_module, memoised
from fastloss.kernels.vector_width import with_full_width

# Elements per parallel task: rows are grouped so a task reads about this many values.
TASK_ELEMENTS = 1 << 15


@dataclass(frozen=True, eq=False)
class Sweep:
    """One pass over a row's columns: ``point(...)`` (arguments in the module docstring) gives
    ``count`` values (a tuple when ``count > 1``), each summed (``op="sum"``) or maximised
    (``op="max"``) over the row. A ``"sum"`` sweep with ``summed`` sums only its first
    ``summed`` values; the others are staged for the gradient sweep (``staged``) and their
    totals are 0."""

    point: object
    count: int = 1
    op: str = "sum"
    summed: int | None = None

    @property
    def sums(self) -> int:
        """How many of the values are summed: the first ``summed`` (all by default); the rest
        are only staged for the gradient sweep, and their totals are 0."""
        return self.count if self.summed is None else self.summed


@dataclass(frozen=True, eq=False)
class RowSpec:
    """The declaration of a row loss (see the module docstring).

    ``inputs`` is the number of row arrays (each ``(rows, D)``), ``row_inputs`` the number of
    per-row arrays (each ``(rows,)``: targets, labels), ``column_inputs`` the number of
    per-column arrays (each ``(D,)``: class weights), ``params`` the runtime scalars,
    ``flags`` the compile-time options (passed to every point function after the params),
    ``coefficients`` how many values ``row`` returns for the gradient sweep, ``grads`` which
    inputs receive a gradient, ``scales`` the names of the gradient's runtime scales (passed
    to ``row``), ``outputs`` the per-row float64 values ``row`` returns before the
    coefficients (the loss first). ``skip(row scalars, params, flags)``, when given, marks a
    row that is left out (``ignore_index``): its outputs are 0 and its gradient rows zeros,
    with no sweep over it. With ``staged`` the gradient sweep also receives the last sweep's
    values at the column, as they were staged for its sums (a ``"sum"`` sweep). With
    ``picked`` the gradient's point function reads the column index only to compare it with
    the row's first scalar (a target class): the CPU kernels run the gradient sweep with the
    column index -1, a comparison that is the same for every column (a vector compare of
    64-bit column indices cost half the sweep's instructions), and then write the target's
    column again with its own index. Specs compare and hash by identity.
    """

    name: str
    inputs: int
    sweeps: tuple[Sweep, ...]
    row: object
    grad: object
    coefficients: int
    grads: tuple[int, ...]
    row_inputs: int = 0
    column_inputs: int = 0
    params: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    scales: tuple[str, ...] = ("scale",)
    outputs: int = 1
    skip: object = None
    staged: bool = False
    picked: bool = False

    def __post_init__(self):
        if self.staged and (not self.sweeps or self.sweeps[-1].op != "sum"):
            raise ValueError(f"{self.name}: staged values come from a last sweep that sums")
        for sweep in self.sweeps:
            if sweep.op not in ("sum", "max"):
                raise ValueError(f"{self.name}: a sweep sums or maximises, got {sweep.op!r}")
            partial = sweep.sums != sweep.count
            if not 0 <= sweep.sums <= sweep.count or (partial and sweep.op != "sum"):
                raise ValueError(f"{self.name}: a sum sweep sums 0 to count of its values")


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def signature(spec: RowSpec, with_grad: bool) -> list[str]:
    """The generated kernels' argument names, in order (the CPU's and the CUDA target's)."""
    arrays = _names("a", spec.inputs) + _names("r", spec.row_inputs)
    arrays += _names("w", spec.column_inputs)
    params = [f"p_{p}" for p in spec.params]
    outputs = _names("out", spec.outputs)
    if with_grad:
        return (
            arrays
            + params
            + [f"s_{s}" for s in spec.scales]
            + _names("g", len(spec.grads))
            + outputs
        )
    return arrays + params + outputs


def point_arguments(spec: RowSpec, column: str, row: str) -> dict[str, list[str]]:
    """The argument lists of the point functions as the generated code spells them, with
    ``column`` for the column index and ``row`` for the row index: the column's values of
    every input and column array, the column index, the row's scalars, (then each function's
    own values), the params and the flags."""
    return {
        "values": [f"a{j}[{row}, {column}]" for j in range(spec.inputs)]
        + [f"w{j}[{column}]" for j in range(spec.column_inputs)]
        + [column]
        + [f"ri{j}" for j in range(spec.row_inputs)],
        "row_scalars": [f"ri{j} = r{j}[{row}]" for j in range(spec.row_inputs)],
        "views": [f"a{j}[{row}]" for j in range(spec.inputs)],
        "columns": _names("w", spec.column_inputs),
        "tail": [f"p_{p}" for p in spec.params] + [f"FLAG_{f.upper()}" for f in spec.flags],
    }


def _kernel_source(spec: RowSpec, with_grad: bool, parallel: bool) -> str:
    kind = "value_grad_rows" if with_grad else "value_rows"
    name = f"{kind}_{'parallel' if parallel else 'serial'}"
    width = max((s.count for s in spec.sweeps if s.op == "sum"), default=0)
    args = point_arguments(spec, "c", "i")
    tail = args["tail"]
    grads = [f"g{j}" for j in range(len(spec.grads))]
    lines = [
        f"@njit(parallel={parallel}, **KERNEL_OPTIONS)",
        f"def {name}({', '.join(signature(spec, with_grad))}):",
        "    rows, columns = a0.shape",
        "    padded = columns + (-columns) % LANES",
        "    per_task = max(1, TASK_ELEMENTS // max(columns, 1))",
        "    tasks = (rows + per_task - 1) // per_task",
    ]
    if with_grad:
        same = [f"g{k}.ctypes.data == a{j}.ctypes.data" for k, j in enumerate(spec.grads)]
        lines.append(f"    in_place = {' and '.join(same)}")
    lines += [
        f"    for k in {'prange' if parallel else 'range'}(tasks):",
    ]
    if width:
        lines.append(f"        scratch = np.empty(({width}, padded), a0.dtype)")
    lines.append("        for i in range(k * per_task, min(rows, (k + 1) * per_task)):")
    body = list(args["row_scalars"])
    if spec.skip is not None:
        row_scalars = [f"ri{j}" for j in range(spec.row_inputs)]
        body.append(f"if skip({', '.join(row_scalars + tail)}):")
        body += [f"    out{j}[i] = 0.0" for j in range(spec.outputs)]
        if with_grad:
            body.append("    for c in range(columns):")
            body += [f"        {g}[i, c] = {g}.dtype.type(0)" for g in grads]
        body.append("    continue")
    results: list[str] = []
    for s, sweep in enumerate(spec.sweeps):
        outs = [f"v{s}_{j}" for j in range(sweep.count)]
        totals = [f"t{s}_{j}" for j in range(sweep.count)]
        call = f"sweep{s}({', '.join(args['values'] + results + tail)})"
        if sweep.op == "max":
            # integer keys in the floats' order: a max reduction that vectorises (NaN wins)
            keys = [f"m{s}_{j}" for j in range(sweep.count)]
            body += [f"{m} = order_key(a0.dtype.type(-np.inf))" for m in keys]
            body.append("for c in range(columns):")
            body.append(f"    {', '.join(outs)} = {call}")
            for v, m in zip(outs, keys, strict=True):
                body.append(f"    {m} = max({m}, order_key(a0.dtype.type({v})))")
            body += [
                f"{t} = np.float64(from_order_key({m}))" for m, t in zip(keys, totals, strict=True)
            ]
        else:
            body.append("for c in range(columns):")
            body.append(f"    {', '.join(outs)} = {call}")
            body += [f"    scratch[{j}, c] = {v}" for j, v in enumerate(outs)]
            summed = range(sweep.sums)
            # the last partial row of lanes padded with +0.0, which leaves a lane as it is (a
            # lane starts at +0.0 and cannot become -0.0, so x + 0.0 == x, NaN and inf too)
            body.append("for c in range(columns, padded):")
            body += [f"    scratch[{j}, c] = a0.dtype.type(0)" for j in summed]
            body += [f"l{j} = lanes_fill(0.0)" for j in summed]
            body.append("for c in range(0, padded, LANES):")
            body += [f"    l{j} = lanes_add_row(l{j}, scratch[{j}], c)" for j in summed]
            body += [f"{t} = lanes_sum(l{j})" for j, t in enumerate(totals[: sweep.sums])]
            body += [f"{t} = 0.0" for t in totals[sweep.sums :]]
        results += totals
    row_scalars = [f"ri{j}" for j in range(spec.row_inputs)]
    scales = [f"s_{s}" for s in spec.scales] if with_grad else ["0.0"] * len(spec.scales)
    row_args = results + row_scalars + args["views"] + args["columns"] + scales + tail
    outs = _names("o", spec.outputs)
    body.append(f"{', '.join(outs)}, coef = row_value({', '.join(row_args)})")
    body += [f"out{j}[i] = {o}" for j, o in enumerate(outs)]
    if with_grad:
        coefs = [f"k{j}" for j in range(spec.coefficients)]
        body += [f"k{j} = a0.dtype.type(coef[{j}])" for j in range(spec.coefficients)]

        def staged_at(column: str) -> list[str]:
            last = spec.sweeps[-1].count if spec.staged else 0
            return [f"scratch[{j}, {column}]" for j in range(last)]

        def targets_at(column: str) -> str:
            return ", ".join(f"{g}[i, {column}]" for g in grads)

        staged, targets = staged_at("c"), targets_at("c")
        # written in place (each gradient exactly over its input), the loop reads the gradient
        # arrays: reading the inputs too, LLVM's overlap check would send it to scalar code
        own: dict[int, str] = {}
        for j, g in zip(spec.grads, grads, strict=True):
            own.setdefault(j, g)  # an input's first output is its gradient (then a Hessian)
        in_place = [
            f"a{j}[i, c]" if j not in own else f"{own[j]}[i, c]" for j in range(spec.inputs)
        ]
        column = spec.inputs + spec.column_inputs  # where the column index is in the values
        if spec.picked:  # the target column's inputs, read before an in-place sweep overwrites
            body.append("tc = ri0")
            body.append("hit = tc >= 0 and tc < columns")
            for j in range(spec.inputs):
                body += [f"sv{j} = a{j}.dtype.type(0)", "if hit:", f"    sv{j} = a{j}[i, tc]"]
        for reads in (in_place, None):
            values = args["values"] if reads is None else reads + args["values"][spec.inputs :]
            if spec.picked:  # no column of the sweep is the target: a constant comparison
                values = values[:column] + ["-1"] + values[column + 1 :]
            call = f"grad({', '.join(values + staged + coefs + tail)})"
            body.append("if in_place:" if reads is not None else "else:")
            body.append("    for c in range(columns):")
            body.append(f"        {targets} = {call}")
        if spec.picked:
            picked = point_arguments(spec, "tc", "i")["values"]
            picked[: spec.inputs] = [f"sv{j}" for j in range(spec.inputs)]
            body.append("if hit:")
            call = f"grad({', '.join(picked + staged_at('tc') + coefs + tail)})"
            body.append(f"    {targets_at('tc')} = {call}")
    lines += ["            " + line for line in body]
    return "\n".join(lines) + "\n"


def module_source(spec: RowSpec, flags: tuple[bool, ...]) -> str:
    """Source of the generated module of ``spec`` for these flag values."""
    functions = [(f"sweep{s}", sweep.point) for s, sweep in enumerate(spec.sweeps)]
    functions += [("row_value", spec.row), ("grad", spec.grad)]
    if spec.skip is not None:
        functions.append(("skip", spec.skip))
    header = [
        f'"""Row kernels of {spec.name} generated by fastloss.kernels.rows; do not edit."""',
        "",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        "from fastloss.kernels._jit import KERNEL_OPTIONS, LANES",
        "from fastloss.kernels.reduction import lanes_add_row, lanes_fill, lanes_sum",
        "from fastloss.kernels.vector_width import full_width",
        "from fastloss.kernels.vmath import from_order_key, order_key",
    ]
    header += [f"from {f.__module__} import {f.__name__} as {alias}" for alias, f in functions]
    header += ["", f"TASK_ELEMENTS = {TASK_ELEMENTS}"]
    for name, value in zip(spec.flags, flags, strict=True):
        header.append(f"FLAG_{name.upper()} = {bool(value)}")
    parts = ["\n".join(header) + "\n"]
    for with_grad in (False, True):
        for parallel in (False, True):
            parts.append(_kernel_source(spec, with_grad, parallel))
    return with_full_width("\n\n".join(parts))


def module_stem(spec: RowSpec, flags: tuple[bool, ...]) -> str:
    """The generated module's name: the spec's name, its flags and the hash of the code of
    every function it declares (a changed declaration is a new module)."""
    digest = _stems.get(spec)
    if digest is None:
        functions = tuple(s.point for s in spec.sweeps) + (spec.row, spec.grad)
        functions += (spec.skip,) if spec.skip is not None else ()
        shape = (spec.inputs, spec.row_inputs, spec.column_inputs, spec.params, spec.flags)
        shape += (spec.grads, spec.scales, spec.outputs, spec.staged, spec.skip is not None)
        shape += (spec.picked,)
        shape += tuple((s.count, s.op, s.sums) for s in spec.sweeps)
        digest = _stems.setdefault(spec, _combined(functions, shape))
    stem = "rows_" + spec.name
    stem += "".join(f"_{name}{int(v)}" for name, v in zip(spec.flags, flags, strict=True))
    return f"{stem}-{digest}"


def _combined(functions: tuple, shape: tuple) -> str:
    digest = hashlib.sha256(repr(shape).encode())
    for function in functions:
        digest.update(code_hash(function).encode())
    return digest.hexdigest()[:12]


_stems: dict[RowSpec, str] = {}


def kernels(spec: RowSpec, flags: tuple[bool, ...] = ()) -> ModuleType:
    """The generated module of ``spec`` for these flag values (memoised, thread-safe). Its
    ``value_rows_serial``, ``value_grad_rows_parallel``, ... compile on first call and cache
    on disk."""

    def build():
        check_flags(spec.name, spec.flags, flags)
        return load_module(module_stem(spec, flags), module_source(spec, flags))

    return memoised(("rows", spec, flags), build)
