"""The bundled default model's plugin: it registers the commands that make, measure and export
the model. Their code lives in ``lab.default_model`` (off the runtime import path) and is imported
only when a command runs.
"""
