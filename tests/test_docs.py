"""The examples in the public docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fastloss

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
