"""Shared diffusion utilities (no Qt): model loading and hashing, the scheduler table, prompt
encoding, VAE encode/decode, cheap latent previews, device selection, the ONNX Runtime backend and
a tiny random pipeline for tests.

Importing this package is cheap; torch, diffusers, transformers and onnxruntime are imported
inside the functions that need them.
"""

from .errors import ModelError, ParamError  # noqa: F401
