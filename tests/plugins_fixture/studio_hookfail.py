"""A plugin whose studio_tools hook raises."""

from app.api import hookimpl


@hookimpl
def studio_tools():
    raise RuntimeError("hook exploded")
