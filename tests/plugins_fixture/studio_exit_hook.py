"""A plugin whose studio_tools hook calls sys.exit(4)."""

import sys

from app.api import hookimpl


@hookimpl
def studio_tools():
    sys.exit(4)
