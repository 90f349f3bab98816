"""The docs: the examples in the public docstrings run and print what they say, and
``docs/losses.md`` lists every registered loss (its index is the registry's)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import fastloss
from fastloss.registry import LOSSES

MODULES = sorted(
    info.name
    for info in pkgutil.iter_modules(fastloss.__path__, "fastloss.")
    if info.name != "fastloss.__main__" and not info.name.startswith("fastloss.kernels")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_examples_exist():
    """Every family module shows at least one example (so this test can fail)."""
    families = ("regression", "binary", "divergence", "softmax")
    for name in (f"fastloss.{family}" for family in families):
        finder = doctest.DocTestFinder()
        tests = finder.find(importlib.import_module(name))
        assert sum(len(t.examples) for t in tests) > 0, name


# --- docs/losses.md and the registry ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LOSSES_MD = ROOT / "docs" / "losses.md"
BEGIN = "<!-- registry index: written by `python tests/test_docs.py` -->"
END = "<!-- end of the registry index -->"
OURS = ("return_grad", "return_hess", "out")


def _arguments(function) -> str:
    """The public arguments of a loss, as its signature shows them, fastloss's own left out."""
    parts, star = [], False
    for p in inspect.signature(function).parameters.values():
        if p.name in OURS:
            continue
        if p.kind == inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def index() -> str:
    """The index table of docs/losses.md, from the registry."""
    lines = ["| loss | arguments | family | follows |", "|---|---|---|---|"]
    for name, info in LOSSES.items():
        lines.append(
            f"| `{name}` | `({_arguments(info.function)})` | {info.family} | "
            f"{info.dialect}: `{info.reference}` |"
        )
    return "\n".join(lines)


def _split(text: str) -> tuple[str, str, str]:
    head, rest = text.split(BEGIN + "\n")
    block, tail = rest.split(END)
    return head, block, tail


def test_index_is_the_registrys():
    _, block, _ = _split(LOSSES_MD.read_text())
    assert block.strip() == index(), (
        "docs/losses.md: the index is not the registry's; run `python tests/test_docs.py`"
    )


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_registered_loss_has_its_paragraph(name):
    """Beside the index, each loss has its row in its family's table of formulas; each loss
    with second derivatives its row in that section's table."""
    head, _, tail = _split(LOSSES_MD.read_text())
    text = head + tail
    assert f"| `{name}(" in text or f"| `{name}` |" in text, f"docs/losses.md: no row of {name}"
    if "return_hess" in inspect.signature(LOSSES[name].function).parameters:
        hessians = text.split("## Second derivatives")[1]
        assert f"| `{name}` |" in hessians, f"docs/losses.md: no second derivative of {name}"


def _write_index() -> None:
    head, _, tail = _split(LOSSES_MD.read_text())
    LOSSES_MD.write_text(head + BEGIN + "\n" + index() + "\n" + END + tail)


if __name__ == "__main__":
    _write_index()
