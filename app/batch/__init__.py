"""Batch runs (no Qt): one tool over many parameter sets, on worker processes or a Ray cluster.

- :mod:`app.batch.plan`: the batch plan (TOML or a dict), expanded to items with stable keys;
- :mod:`app.batch.worker`: what runs items in a worker (the tool's own run path, no session);
- :mod:`app.batch.local` and :mod:`app.batch.ray_engine`: the engines;
- :mod:`app.batch.driver`: the loop that hands items to an engine and records every one in the
  session (only the driver writes it);
- :mod:`app.cli_batch`: ``implicit-studio batch``.
"""
