"""The one-step student of the bundled model: its training prompts, its training run and its evaluation
(the distill tool itself is ``plugins/distill``)."""
