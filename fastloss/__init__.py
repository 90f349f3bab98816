"""fastloss: loss functions and their gradients as fused Numba kernels.

Every loss reads its inputs once, writes its gradient once and reduces the loss in the same
pass, on the CPU (Numba's parallel ``njit``) or on a CUDA device (``cuda.jit``) when given
CuPy arrays. The functions speak torch's dialect: same names, argument order, defaults and
semantics as ``torch.nn.functional``.

Importing fastloss compiles nothing and does not import Numba; kernels compile on first use
and are cached on disk.
"""

__version__ = "0.1.0"

from fastloss import registry as registry  # noqa: E402 - the registry reads the losses above
from fastloss.accumulator import Accumulator as Accumulator
from fastloss.binary import binary_cross_entropy as binary_cross_entropy
from fastloss.binary import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from fastloss.binary import binary_crossentropy as binary_crossentropy
from fastloss.binary import binary_focal_crossentropy as binary_focal_crossentropy
from fastloss.binary import sigmoid_focal_loss as sigmoid_focal_loss
from fastloss.divergence import kl_div as kl_div
from fastloss.regression import gaussian_nll_loss as gaussian_nll_loss
from fastloss.regression import huber_loss as huber_loss
from fastloss.regression import l1_loss as l1_loss
from fastloss.regression import log_cosh_loss as log_cosh_loss
from fastloss.regression import mape_loss as mape_loss
from fastloss.regression import mse_loss as mse_loss
from fastloss.regression import msle_loss as msle_loss
from fastloss.regression import poisson_nll_loss as poisson_nll_loss
from fastloss.regression import rmse_loss as rmse_loss
from fastloss.regression import smooth_l1_loss as smooth_l1_loss
from fastloss.softmax import categorical_crossentropy as categorical_crossentropy
from fastloss.softmax import categorical_focal_crossentropy as categorical_focal_crossentropy
from fastloss.softmax import cross_entropy as cross_entropy
from fastloss.softmax import focal_loss as focal_loss
from fastloss.softmax import nll_loss as nll_loss
from fastloss.softmax import sparse_categorical_crossentropy as sparse_categorical_crossentropy
