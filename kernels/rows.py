"""The factory of row losses: one declaration, every CPU kernel.

A row loss reads rows of ``D`` values from one or more arrays (logits; two embeddings; an
anchor, a positive and a negative) and gives one loss per row. It is declared by a
:class:`RowSpec`:

``sweeps``  passes over a row's columns, in order. Sweep ``s``'s point function takes the
            column's values of every input, the results of the earlier sweeps and the runtime
            parameters, and returns ``count`` values; a ``"sum"`` sweep adds each over the row
            under the row contract below, a ``"max"`` sweep keeps the largest (NaN wins).
``row``     the row's loss from the sweeps' results (float64), the row's own scalars (a
            target, a label) and the parameters: returns ``(loss, coefficients)``, a float64
            loss and a tuple of ``coefficients`` float64 values for the gradient sweep.
``grad``    the gradient sweep's point function: the column's values, the coefficients
            (scaled by the reduction's scale, in the input's precision), the parameters and
            flags, to the gradient of each input in ``grads`` (a bare value for one).

From that the factory writes a module (like :mod:`fastloss.kernels.elementwise`: a real file in
the cache directory, so ``cache=True`` works and a changed declaration is a new module) with
``value_rows`` and ``value_grad_rows``, each serial and parallel (``prange`` over tasks of rows).
Options that change the formula are compile-time flags (module constants ``FLAG_<NAME>``), so a
kernel carries no branch for an option it does not use; runtime scalars are arguments.

The row contract: a sum over a row's columns adds column ``c`` into float64 lane ``c % LANES``
in column order and combines the lanes in the fixed halving tree of
:func:`~fastloss.kernels.reduction.lanes_sum`. The values are computed in the input's precision
(the element loop vectorises at full width) and staged in a scratch row, then added a row of
``LANES`` at a time. The bits of a row's loss depend on its values only: not on the vector
width, the thread count or the kernel variant. Row losses are then reduced under the reduction
contract, a row being an element.
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
    """One pass over a row's columns: ``point(x_0, ..., x_k, *earlier, *params)`` gives
    ``count`` values (a tuple when ``count > 1``), each summed (``op="sum"``) or maximised
    (``op="max"``) over the row."""

    point: object
    count: int = 1
    op: str = "sum"


@dataclass(frozen=True, eq=False)
class RowSpec:
    """The declaration of a row loss (see the module docstring).

    ``inputs`` is the number of row arrays (each ``(rows, D)``), ``row_inputs`` the number of
    per-row arrays (each ``(rows,)``: targets, labels), ``params`` the runtime scalars,
    ``flags`` the compile-time options (passed to every point function after the params),
    ``coefficients`` how many values ``row`` returns for the gradient sweep, ``grads`` which
    inputs receive a gradient. Specs compare and hash by identity.
    """

    name: str
    inputs: int
    sweeps: tuple[Sweep, ...]
    row: object
    grad: object
    coefficients: int
    grads: tuple[int, ...]
    row_inputs: int = 0
    params: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _kernel_source(spec: RowSpec, with_grad: bool, parallel: bool) -> str:
    arrays = _names("a", spec.inputs)
    row_arrays = _names("r", spec.row_inputs)
    params = list(spec.params)
    flags = [f"FLAG_{f.upper()}" for f in spec.flags]
    grads = [f"g{j}" for j in spec.grads]
    kind = "value_grad_rows" if with_grad else "value_rows"
    name = f"{kind}_{'parallel' if parallel else 'serial'}"
    outputs = (["scale"] + grads if with_grad else []) + ["row_loss"]
    width = max(s.count for s in spec.sweeps)
    lines = [
        f"@njit(parallel={parallel}, **KERNEL_OPTIONS)",
        f"def {name}({', '.join(arrays + row_arrays + params + outputs)}):",
        "    rows, columns = a0.shape",
        "    full = columns - columns % LANES",
        "    per_task = max(1, TASK_ELEMENTS // max(columns, 1))",
        "    tasks = (rows + per_task - 1) // per_task",
        f"    for k in {'prange' if parallel else 'range'}(tasks):",
        f"        scratch = np.empty(({width}, columns), a0.dtype)",
        "        for i in range(k * per_task, min(rows, (k + 1) * per_task)):",
    ]
    body = [f"x{j} = a{j}[i]" for j in range(spec.inputs)]
    column = [f"x{j}[c]" for j in range(spec.inputs)]
    results: list[str] = []
    for s, sweep in enumerate(spec.sweeps):
        outs = [f"v{s}_{j}" for j in range(sweep.count)]
        totals = [f"t{s}_{j}" for j in range(sweep.count)]
        call = f"sweep{s}({', '.join(column + results + params + flags)})"
        if sweep.op == "max":
            body += [f"{t} = -np.inf" for t in totals]
            body.append("for c in range(columns):")
            body.append(f"    {', '.join(outs)} = {call}")
            for v, t in zip(outs, totals, strict=True):
                body.append(f"    if {v} > {t} or {v} != {v}:")
                body.append(f"        {t} = {v}")
            body += [f"{t} = np.float64({t})" for t in totals]
        else:
            body.append("for c in range(columns):")
            body.append(f"    {', '.join(outs)} = {call}")
            body += [f"    scratch[{j}, c] = {v}" for j, v in enumerate(outs)]
            body += [f"l{j} = lanes_fill(0.0)" for j in range(sweep.count)]
            body.append("for c in range(0, full, LANES):")
            body += [f"    l{j} = lanes_add_row(l{j}, scratch[{j}], c)" for j in range(sweep.count)]
            body.append("for c in range(full, columns):")
            body += [
                f"    l{j} = lanes_add_at(l{j}, c - full, scratch[{j}, c])"
                for j in range(sweep.count)
            ]
            body += [f"{t} = lanes_sum(l{j})" for j, t in enumerate(totals)]
        results += totals
    row_scalars = [f"r{j}[i]" for j in range(spec.row_inputs)]
    body.append(f"loss, coef = row_value({', '.join(results + row_scalars + params + flags)})")
    body.append("row_loss[i] = loss")
    if with_grad:
        coefs = [f"k{j}" for j in range(spec.coefficients)]
        body += [f"k{j} = a0.dtype.type(coef[{j}] * scale)" for j in range(spec.coefficients)]
        body += [f"y{j} = g{j}[i]" for j in spec.grads]
        body.append("for c in range(columns):")
        targets = [f"y{j}[c]" for j in spec.grads]
        call = f"grad({', '.join(column + coefs + params + flags)})"
        body.append(f"    {', '.join(targets)} = {call}")
    lines += ["            " + line for line in body]
    return "\n".join(lines) + "\n"


def module_source(spec: RowSpec, flags: tuple[bool, ...]) -> str:
    """Source of the generated module of ``spec`` for these flag values."""
    functions = [(f"sweep{s}", sweep.point) for s, sweep in enumerate(spec.sweeps)]
    functions += [("row_value", spec.row), ("grad", spec.grad)]
    header = [
        f'"""Row kernels of {spec.name} generated by fastloss.kernels.rows; do not edit."""',
        "",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        "from fastloss.kernels._jit import KERNEL_OPTIONS, LANES",
        "from fastloss.kernels.reduction import lanes_add_at, lanes_add_row, lanes_fill, lanes_sum",
        "from fastloss.kernels.scalar import const",
        "from fastloss.kernels.vector_width import full_width",
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
        shape = (spec.inputs, spec.row_inputs, spec.params, spec.flags, spec.grads)
        shape += tuple((s.count, s.op) for s in spec.sweeps)
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
