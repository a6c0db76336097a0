"""A plugin whose tools misbehave on purpose: they end the process, raise KeyboardInterrupt,
abort natively, or refuse a parameter from inside the run."""

from app.api import IntParam, ToolSpec, hookimpl


def _tool(tool_id: str, fn: str, *params) -> ToolSpec:
    return ToolSpec(id=tool_id, title=tool_id, run=f"studio_evil.ops:{fn}", params=params,
                    results=("image",))


@hookimpl
def studio_tools():
    return [
        _tool("exit-tool", "exit_run", IntParam(name="code", default=0, min=0, max=255)),
        _tool("interrupt-tool", "interrupt_run"),
        _tool("abort-tool", "abort_run"),
        _tool("param-error-tool", "param_error_run", IntParam(name="width", default=64, min=1, max=10000)),
    ]
