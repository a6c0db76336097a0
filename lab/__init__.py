"""Training, evaluation and sample-making code of the studio's own models (imports anything; nothing in
``app/`` or ``plugins/`` imports it: plugins name its functions in ``CommandSpec(main=...)`` strings)."""
