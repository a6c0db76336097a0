"""A plugin written for a future plugin API."""

from app.api import ToolSpec, hookimpl

REQUIRES_API = "99.0"


@hookimpl
def studio_tools():
    return [ToolSpec(id="future-tool", title="Future", run="studio_future:run")]


def run(ctx):
    return None
