"""A plugin that raises KeyboardInterrupt while being imported."""

raise KeyboardInterrupt
