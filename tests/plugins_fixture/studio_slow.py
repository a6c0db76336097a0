"""A plugin whose registration hook is slow."""

import time

from app.api import ToolSpec, hookimpl


@hookimpl
def studio_tools():
    time.sleep(0.15)
    return [ToolSpec(id="slow-plugin-tool", title="Slow", run="studio_slow:run", results=())]


def run(ctx):
    return None
