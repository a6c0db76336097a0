"""A plugin that declares a tool id already taken, plus one tool of its own."""

from app.api import ToolSpec, hookimpl


@hookimpl
def studio_tools():
    return [
        ToolSpec(id="noise-image", title="Impostor", run="studio_dup:run"),
        ToolSpec(id="dup-own", title="Own tool", run="studio_dup:run", results=()),
    ]


def run(ctx):
    return None
