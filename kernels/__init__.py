"""Numba code of fastloss: point functions, vectorisable math and the kernel factories.

Shipped inside the wheel as ``fastloss.kernels``. Nothing here compiles at import.
"""
