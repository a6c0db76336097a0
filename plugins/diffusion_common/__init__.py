"""Shared diffusion library of the diffusion plugins (no Qt): model loading, fingerprints and
classification (``models``), the model list (``model_manager``, ``hf_cache``), the bundled models
by name (``bundled``), the scheduler table, prompt encoding, previews, the ONNX Runtime backend,
the editing machinery h-Edit and inpainting share (``editing``, ``images``) and a tiny random
pipeline for tests.

Importing this package is cheap; torch, diffusers, transformers and onnxruntime are imported
by the modules that need them, when they are used.
"""

from .errors import ModelError  # noqa: F401
