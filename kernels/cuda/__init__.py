"""CUDA kernels of fastloss (imported only on the first device call: it imports numba.cuda)."""
