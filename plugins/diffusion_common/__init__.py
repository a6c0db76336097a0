"""Shared diffusion library of the diffusion plugins (no Qt): model loading, fingerprints and
classification (``models``), the model list (``model_manager``, ``hf_cache``), the bundled models
by name (``bundled``), the scheduler table, prompt encoding, previews, the ONNX Runtime backend,
the editing machinery h-Edit and inpainting share (``editing``, ``images``) and a tiny random
pipeline for tests.

Importing this package is cheap; torch, diffusers, transformers and onnxruntime are imported
by the modules that need them, when they are used.
"""

from .errors import ModelError  # noqa: F401


def _drop_torchvision_fallback_notes() -> None:
    """transformers says, once per class and on every run, that ``CLIPImageProcessor`` (and two
    others diffusers names) "requires torchvision (not installed); falling back to ...Pil": the
    PIL processors it falls back to are the ones these tools want (torchvision is not a
    dependency), so the three lines only alarmed (issue 28). Only those records are dropped;
    transformers' other warnings pass. Adding a filter to a logger imports nothing."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
            return True
        return not ("requires torchvision (not installed); falling back to" in text)

    logging.getLogger("transformers.utils.import_utils").addFilter(keep)


_drop_torchvision_fallback_notes()
