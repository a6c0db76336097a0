"""Test set-up for the seed-sweep plugin.

The fixtures ``run_tool``, ``studio_cli``, ``studio_manager`` (from ``app.testing``) come from
Implicit Studio's pytest plugins, loaded automatically once the app is installed: nothing to
import (``pytest --fixtures`` lists them).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no screen needed
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the studio's bundled model is local
