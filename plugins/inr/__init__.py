"""Implicit neural representations: fit, load, evaluate and view 2D image INRs and 3D SDFs.

Importing this package is cheap; the compute modules (``models``, ``loaders``, ``fields``,
``geometry``, ``render``, ``fit``, ``image2d``) import torch/numpy themselves and never Qt.
The Qt viewers live in ``view2d`` and ``view3d``.
"""
