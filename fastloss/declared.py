"""Public functions declared by a registry row instead of written by hand.

An elementwise loss whose public function only resolves scalar options and runs its kernel is
declared in its :data:`fastloss.registry.LOSSES` row as an :class:`Elementwise`: the kernel
(an ``ElementwiseSpec`` of ``fastloss.kernels.<family>``), its options, and the pieces of its
docstring. :func:`build` turns that into a real Python function with torch's signature
(``input, target``, the options, ``size_average, reduce, reduction`` where torch has them,
keyword-only ``return_grad, return_hess, out``), type hints and a numpydoc docstring with the
formula, the gradient and an example; the function runs through the same intake and plan as
the handwritten ones (:func:`fastloss.regression._loss`), on the CPU and on CUDA devices.

Why generated source (``exec`` of a ``def``) rather than a wrapper with ``*args, **kwargs``:
the function binds its arguments as fast as a handwritten one (a call on 3 elements is a few
microseconds), :func:`inspect.signature`, ``help`` and IDEs see the real parameters, defaults
and annotations, and its doctest runs (its globals are this module's). Nothing compiles and
Numba is not imported until the first call.
"""

from __future__ import annotations

import keyword
import linecache
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# legacy_reduction: called by the generated functions, whose globals are this module's
from fastloss._intake import check_option, legacy_reduction  # noqa: F401
from fastloss.regression import _loss

ArrayLike = Any

# The names the generated signature and body use cannot name an option.
_RESERVED = {"input", "target", "size_average", "reduce", "reduction", "return_grad"}
_RESERVED |= {"return_hess", "out", "weight", "legacy_reduction", "_run", "_declaration"}


@dataclass(frozen=True)
class Option:
    """One scalar option of a declared loss.

    ``kind="real"`` is a runtime parameter of the kernel (passed in the compute dtype: a sweep
    over its values compiles once), ``kind="bool"`` a compile-time flag (each value its own
    kernel). They map, in declaration order, onto the spec's ``params`` and ``flags``.
    ``limits`` are :func:`~fastloss._intake.check_option`'s bounds (``low``, ``strict``,
    ``finite``) for a real option.
    """

    name: str
    default: float | bool
    doc: str
    kind: str = "real"
    limits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def annotation(self) -> str:
        return "bool" if self.kind == "bool" else "float"


@dataclass(frozen=True)
class Elementwise:
    """The declaration of an elementwise loss's public function.

    Parameters
    ----------
    kernel
        ``(family, name)``: the ``ElementwiseSpec`` ``fastloss.kernels.<family>.<name>``.
    title
        The docstring's first words (``"Hinge embedding loss"``); ``", as <reference>."``
        follows (``", as Keras's <class>."`` for a ``keras.losses`` class).
    formula
        reST math: the element loss and its derivative with respect to the input.
    notes
        The paragraphs after the formula: semantics, kinks, the second derivative.
    example
        ``(expression, printed)``: a doctest, after ``import fastloss``.
    options
        The scalar options, in torch's order (after ``input, target``).
    legacy
        torch's deprecated ``size_average, reduce`` come before ``reduction``.
    warn_shape
        torch's warning when the target's size differs from the input's (``mse_loss``'s);
        without it targets broadcast silently.
    target_fits_input
        The target must broadcast to the input's shape, not beyond it (torch's
        ``soft_margin_loss`` writes its result in the input's shape and refuses a larger
        target); a ``ValueError`` otherwise.
    keyword_reduction
        ``reduction`` is keyword-only, as in fastloss's Keras-form losses.
    preamble
        A paragraph between the first line and the formula (``"With d_i = ...:"``).
    constants
        Kernel parameters after the options' that no argument sets (Keras's epsilon).
    weight
        torch's per-element ``weight`` argument, in the shape of ``input`` (it broadcasts as
        ``input`` does): ``"sum"`` divides the weighted mean by the sum of the weights (torch's
        ``mse_loss``, ``l1_loss``), ``"count"`` by the element count (``huber_loss``).
    order
        The signature's parameters between ``target`` and the keyword-only ones, by name (the
        options, ``size_average``, ``reduce``, ``reduction``, ``weight``), where torch's order
        is not the options' then the legacy flags then ``reduction`` then ``weight``.
    kernel_for
        ``(params, flags) -> (kernel, params, flags)``: another kernel for some option values
        (``smooth_l1_loss``'s ``beta = 0`` is ``l1_loss``).
    """

    kernel: tuple[str, str]
    title: str
    formula: str
    notes: str
    example: tuple[str, str]
    options: tuple[Option, ...] = ()
    legacy: bool = True
    warn_shape: bool = False
    target_fits_input: bool = False
    keyword_reduction: bool = False
    preamble: str = ""
    constants: tuple[float, ...] = ()
    weight: str | None = None
    order: tuple[str, ...] = ()
    kernel_for: Callable | None = None

    def parameters(self) -> list[str]:
        """The signature's parameters, as source."""
        source = {o.name: f"{o.name}: {o.annotation} = {o.default!r}" for o in self.options}
        if self.legacy:
            source["size_average"] = "size_average: bool | None = None"
            source["reduce"] = "reduce: bool | None = None"
        source["reduction"] = 'reduction: str = "mean"'
        if self.weight is not None:
            source["weight"] = "weight: ArrayLike | None = None"
        keyword = [source.pop("reduction")] if self.keyword_reduction else []
        order = self.order or tuple(source)
        if sorted(order) != sorted(source):
            raise ValueError(f"order: expected the parameters {sorted(source)}, got {order}")
        names = [source[name] for name in order] + ["*", *keyword, "return_grad: bool = False"]
        names += ["return_hess: bool = False", "out: np.ndarray | None = None"]
        return ["input: ArrayLike", "target: ArrayLike", *names]

    def resolve(self, values: tuple) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        """The options' values checked and split into the kernel's ``(params, flags)``."""
        if not self.options:
            return self.constants, ()  # a call without options pays no loop
        params, flags = [], []
        for option, value in zip(self.options, values, strict=True):
            if option.kind == "bool":
                flags.append(check_option(value, option.name, "bool"))
            else:
                params.append(check_option(value, option.name, **option.limits))
        return (*params, *self.constants), tuple(flags)


def _run(
    declaration: Elementwise, arrays, values, reduction, return_grad, return_hess, out, weight
):
    """The body of every declared function: options resolved, then the elementwise plan."""
    params, flags = declaration.resolve(values)
    kernel = declaration.kernel
    if declaration.kernel_for is not None:
        kernel, params, flags = declaration.kernel_for(params, flags)
    if declaration.target_fits_input:
        _check_fits(arrays["input"], arrays["target"])
    return _loss(
        kernel,
        arrays,
        reduction=reduction,
        params=params,
        flags=flags,
        weight=weight,
        mean_by_weight=declaration.weight == "sum",
        warn_shape=declaration.warn_shape,
        return_grad=return_grad,
        return_hess=return_hess,
        out=out,
    )


def _check_fits(input: object, target: object) -> None:
    """``target`` broadcasts to the shape of ``input`` (device arrays too: shapes only)."""
    x_shape = getattr(input, "shape", None)
    if x_shape is not None and x_shape == getattr(target, "shape", None):
        return  # the common case, at no cost
    x_shape, t_shape = np.shape(input), np.shape(target)
    try:
        fits = np.broadcast_shapes(x_shape, t_shape) == x_shape
    except ValueError:
        return  # no broadcast at all: the intake names both shapes
    if not fits:
        raise ValueError(
            f"target: expected a shape that broadcasts to the shape of input {x_shape}, "
            f"got {t_shape}"
        )


def source(name: str, declaration: Elementwise) -> str:
    """The source of the declared function ``name`` (inside a factory taking the
    declaration)."""
    for option in declaration.options:
        if (
            option.name in _RESERVED
            or not option.name.isidentifier()
            or keyword.iskeyword(option.name)
        ):
            raise ValueError(f"{name}: option name {option.name!r} is reserved or invalid")
        if option.kind not in ("real", "bool"):
            raise ValueError(f"{name}: option kind {option.kind!r}, expected 'real' or 'bool'")
    signature = ",\n".join(f"        {p}" for p in declaration.parameters())
    values = "".join(f"{o.name}, " for o in declaration.options)
    reduction = (
        "legacy_reduction(size_average, reduce, reduction)" if declaration.legacy else "reduction"
    )
    return "\n".join(
        [
            "from __future__ import annotations",
            "",
            "",
            "def _factory(_declaration):",
            f"    def {name}(",
            f"{signature},",
            "    ):",
            f"        reduction = {reduction}",
            "        return _run(",
            "            _declaration,",
            '            {"input": input, "target": target},',
            f"            ({values}),",
            "            reduction,",
            "            return_grad,",
            "            return_hess,",
            "            out,",
            "            weight," if declaration.weight is not None else "            None,",
            "        )",
            "",
            f"    return {name}",
            "",
        ]
    )


def docstring(name: str, reference: str, declaration: Elementwise) -> str:
    """The numpydoc docstring of the declared function."""
    # a Keras loss is named by its class: "as Keras's ``LogCosh``"
    keras = reference.startswith("keras.losses.")
    source = f"Keras's ``{reference.rsplit('.', 1)[1]}``" if keras else f"``{reference}``"
    lines = [f"{declaration.title}, as {source}.", ""]
    if declaration.preamble:
        lines += [textwrap.dedent(declaration.preamble).strip(), ""]
    lines += [
        ".. math::",
        textwrap.indent(textwrap.dedent(declaration.formula).strip(), "    "),
        "",
        textwrap.dedent(declaration.notes).strip(),
        "",
        "Parameters",
        "----------",
        "input, target : array_like",
        "    Inputs and targets; NumPy, DLPack (torch CPU tensors, no copy) or CuPy arrays.",
    ]
    entries = {o.name: [f"{o.name} : {o.annotation}", f"    {o.doc}"] for o in declaration.options}
    if declaration.legacy:
        entries["size_average"] = [
            "size_average, reduce : bool, optional",
            "    torch's deprecated reduction flags; they override ``reduction`` when given.",
        ]
        entries["reduce"] = []
    mean = "their weights' sum" if declaration.weight == "sum" else "their count"
    entries["reduction"] = [
        'reduction : {"mean", "sum", "none"}',
        f'    ``"mean"`` divides the sum of the element losses by {mean}, ``"sum"`` sums',
        '    them, ``"none"`` returns them.',
    ]
    if declaration.weight is not None:
        entries["weight"] = [
            "weight : array_like, optional",
            "    Per-element weights, the shape of ``input`` (broadcast as ``input`` is); they",
            "    multiply the element losses.",
        ]
    order = declaration.order or tuple(entries)
    if declaration.keyword_reduction:
        order = (*(name for name in order if name != "reduction"), "reduction")
    for name in order:
        lines += entries[name]
    lines += [
        "return_grad : bool",
        "    Also return the gradient with respect to ``input``.",
        "return_hess : bool",
        "    Also return the second derivative with respect to ``input``, element by element",
        '    (implies ``return_grad``; see :doc:`losses`, "Second derivatives").',
        "out : ndarray, optional",
        "    Receives the gradient (``input`` itself is allowed).",
        "",
        "Returns",
        "-------",
        "loss : scalar or ndarray",
        "    A NumPy scalar of the compute dtype (a 0-d CuPy array on the GPU), or an array for",
        '    ``reduction="none"``.',
        "grad : ndarray",
        "    With ``return_grad=True``: the gradient of the loss (of the sum of the losses for",
        '    ``"none"``) with respect to ``input``, in its shape and floating dtype.',
        "hess : ndarray",
        "    With ``return_hess=True`` (then ``(loss, grad, hess)``): the second derivative,",
        "    element by element, in the gradient's shape and dtype.",
        "",
        "Examples",
        "--------",
        ">>> import fastloss",
        f">>> {declaration.example[0]}",
        declaration.example[1],
        "",
    ]
    return "\n".join(lines)


def build(name: str, reference: str, declaration: Elementwise):
    """The public function ``name`` declared by ``declaration`` (its home is this module)."""
    text = source(name, declaration)
    filename = f"<fastloss.declared {name}>"
    # tracebacks and inspect.getsource show the generated lines
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(text, filename, "exec"), globals(), namespace)
    function = namespace["_factory"](declaration)
    function.__doc__ = docstring(name, reference, declaration)
    function.__qualname__ = name
    globals()[name] = function  # its home: fastloss.declared.<name> (doctest finds it there)
    return function
