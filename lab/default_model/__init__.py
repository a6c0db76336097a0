"""The bundled default model: data generator, detector, architecture, training, evaluation,
ONNX export and model card. Heavy imports live inside the functions that need them.
"""
