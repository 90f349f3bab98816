"""fastloss: loss functions and their gradients as fused Numba kernels.

Every loss reads its inputs once, writes its gradient once and reduces the loss in the same
pass, on the CPU (Numba's parallel ``njit``) or on a CUDA device (``cuda.jit``) when given
CuPy arrays. The functions speak torch's dialect: same names, argument order, defaults and
semantics as ``torch.nn.functional``.

Importing fastloss compiles nothing and does not import Numba; kernels compile on first use
and are cached on disk.
"""

# The imports below follow _map_kernels(), which the source tree needs first.
# ruff: noqa: E402

__version__ = "0.1.0"


def _map_kernels() -> None:
    """Make ``fastloss.kernels`` importable when fastloss is imported from a checkout.

    pyproject maps ``fastloss.kernels`` to the top-level ``kernels/`` folder: a wheel ships it
    inside the package and an editable install's finder maps it, but Python run from the
    repository root imports the source folder ``fastloss/``, which has no ``kernels``. There
    (and only when nothing else finds it) the sibling folder is loaded as ``fastloss.kernels``,
    as the editable finder does; its ``__init__`` is a docstring, so nothing compiles and
    Numba is not imported.
    """
    import importlib.util
    import os
    import sys

    name = __name__ + ".kernels"
    if importlib.util.find_spec(name) is not None:
        return  # a wheel, or an editable install
    sibling = os.path.join(os.path.dirname(os.path.dirname(__file__)), "kernels")
    init = os.path.join(sibling, "__init__.py")
    if not os.path.isfile(init):
        raise ImportError(
            f"fastloss: no fastloss.kernels next to {os.path.dirname(__file__)}; install "
            "fastloss (pip install .) or run from a complete checkout"
        )
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[sibling])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_map_kernels()

from fastloss import registry as registry
from fastloss.accumulator import Accumulator as Accumulator
from fastloss.binary import binary_cross_entropy as binary_cross_entropy
from fastloss.binary import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from fastloss.binary import binary_crossentropy as binary_crossentropy
from fastloss.binary import binary_focal_crossentropy as binary_focal_crossentropy
from fastloss.binary import sigmoid_focal_loss as sigmoid_focal_loss
from fastloss.divergence import kl_div as kl_div
from fastloss.pairwise import cosine_embedding_loss as cosine_embedding_loss
from fastloss.pairwise import triplet_margin_loss as triplet_margin_loss
from fastloss.regression import gaussian_nll_loss as gaussian_nll_loss
from fastloss.regression import rmse_loss as rmse_loss
from fastloss.softmax import categorical_crossentropy as categorical_crossentropy
from fastloss.softmax import categorical_focal_crossentropy as categorical_focal_crossentropy
from fastloss.softmax import cross_entropy as cross_entropy
from fastloss.softmax import focal_loss as focal_loss
from fastloss.softmax import nll_loss as nll_loss
from fastloss.softmax import sparse_categorical_crossentropy as sparse_categorical_crossentropy

# The losses declared by a registry row (fastloss/declared.py: mse_loss, l1_loss, huber_loss,
# smooth_l1_loss, poisson_nll_loss, log_cosh_loss, ...) are generated there and have no
# family module to import them from; each is exported here by its row, so declaring a loss
# needs no edit of this file.
for _info in registry.LOSSES.values():
    if _info.declaration is not None:
        globals()[_info.name] = _info.function
del _info
