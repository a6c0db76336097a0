"""The studio's lab: training, evaluation and sample-making code, kept off the runtime import path.

Nothing in ``app/`` or ``plugins/`` imports ``lab`` (an import-linter contract checks it); plugins
only name its functions as commands (``CommandSpec(main="lab.default_model.train:main")``), which
are imported when the command runs. ``lab`` may import anything: the plugins' compute modules, the
studio's services, ``app.paths`` for the bundled resources.

- ``lab.default_model``: the bundled text-to-image model: data generator (``shapes``), detector,
  architecture (``build``), training (``train``; ``implicit-studio train-default-model``),
  evaluation (``evaluate``; ``evaluate-default-model``), ONNX export (``export_onnx``;
  ``export-default-model-onnx``) and its model card (``card``).
- ``lab.hedit_eval`` and ``lab.inpaint_eval``: the h-Edit and inpainting evaluations
  (``python -m lab.hedit_eval``, ``python -m lab.inpaint_eval``).
- ``lab.distill``: the one-step student of the bundled model: training prompts, the training
  driver (``python -m lab.distill.train_student``), its evaluation against the teacher, the
  SiD/DMD2 comparison and its model card.
- ``lab.inr_samples`` and ``lab.rl_samples``: the bundled INR and RL samples
  (``python -m lab.inr_samples``, ``python -m lab.rl_samples``).
"""
