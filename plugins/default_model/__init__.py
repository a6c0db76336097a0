"""The bundled default model: data generator, detector, training, evaluation and export.

Nothing here is imported at start-up; every heavy import lives inside the functions that need it.
"""
