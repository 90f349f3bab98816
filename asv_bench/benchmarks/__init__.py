"""asv benchmarks of fastloss (see ``bench_regression.py``; the cases are in ``common.py``)."""

import importlib
import sys
from pathlib import Path


def _fastloss_importable() -> None:
    """Fall back to this checkout when ``import fastloss`` finds no real package.

    An editable install made before ``fastloss/__init__.py`` existed maps ``fastloss`` to an
    empty namespace package; with the checkout's root first on ``sys.path`` the real package
    loads. A working install is left alone.
    """
    try:
        module = importlib.import_module("fastloss")
    except ImportError:
        module = None
    if module is not None and getattr(module, "__file__", None):
        return
    root = Path(__file__).resolve().parents[2]
    if (root / "fastloss" / "__init__.py").is_file():
        for name in [m for m in sys.modules if m == "fastloss" or m.startswith("fastloss.")]:
            del sys.modules[name]
        sys.path.insert(0, str(root))


_fastloss_importable()
