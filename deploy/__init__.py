"""Deployment: model export (needs torch) and the numpy-only edge runtime (``deploy.runtime``).

Nothing here imports torch at package import time, so ``import deploy.runtime`` works on a device
that has only numpy and an inference runtime.
"""
