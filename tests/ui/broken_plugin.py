"""A plugin that fails while registering its tools (for the Plugins dialog test)."""

from app.api import hookimpl


@hookimpl
def studio_tools():
    raise ImportError("the toy broken plugin cannot find its weights (on purpose)")
