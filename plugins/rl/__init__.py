"""Distributional-RL plugin: return distributions of C51 / QR-DQN / IQN agents, step by step.

Compute (no Qt): ``distributions`` (the one distribution model), ``trajectory`` (file format,
Minari/D4RL readers, Monte-Carlo returns, calibration), ``agents`` / ``loaders`` (torch agents,
cleanrl and sb3-contrib files), ``train``, ``record``, ``render``, ``episode_stats``, ``tools``
(run functions). Qt: ``views``. Registration: ``plugin`` (stdlib + app.api).
"""
