"""Toy plugin: noise images, a failing tool, image inversion, a mesh, a reader.

Imports only ``app.api``; the run functions live in ``studio_toy.ops`` and are imported lazily.
"""

from app.api import (
    BoolParam,
    ChoiceParam,
    CommandSpec,
    FloatParam,
    ImageParam,
    IntParam,
    MaskParam,
    ReaderSpec,
    SeedParam,
    TextParam,
    ToolSpec,
    hookimpl,
)

REQUIRES_API = "1.0"

#: Every SessionEvent this plugin observed (tests read it).
EVENTS = []


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="noise-image",
            title="Noise image",
            description="Random noise built up over a number of steps.",
            group="generate",
            run="studio_toy.ops:noise_image",
            params=(
                IntParam(name="size", default=32, min=4, max=512, help="width and height in pixels"),
                IntParam(name="steps", default=5, min=1, max=10000),
                FloatParam(name="step_delay", default=0.0, min=0.0, max=5.0, help="seconds to sleep per step"),
                ChoiceParam(name="palette", choices=("gray", "color"), default="color"),
                BoolParam(name="invert", default=False),
                TextParam(name="note", default="", multiline=True),
                SeedParam(name="seed"),
            ),
            results=("image",),
        ),
        ToolSpec(
            id="fail-tool",
            title="Always fails",
            run="studio_toy.ops:fail",
            params=(IntParam(name="after_steps", default=1, min=0, max=10),),
            results=("image",),
        ),
        ToolSpec(
            id="user-error-tool",
            title="Fails with a user error",
            run="studio_toy.ops:user_error",
            results=("image",),
        ),
        ToolSpec(
            id="invert-image",
            title="Invert image",
            group="edit",
            run="studio_toy.ops:invert",
            params=(ImageParam(name="image"), MaskParam(name="mask", optional=True, image_param="image")),
            results=("image",),
        ),
        ToolSpec(
            id="toy-mesh",
            title="Tetrahedron",
            group="view3d",
            run="studio_toy.ops:tetrahedron",
            params=(FloatParam(name="scale", default=1.0, min=0.1, max=10.0),),
            results=("mesh", "table"),
        ),
        ToolSpec(
            id="missing-module-tool",
            title="Run function cannot be imported",
            run="studio_toy.no_such_module:run",
        ),
    ]


@hookimpl
def studio_readers():
    return [ReaderSpec(id="toy-reader", title="Toy gray image", patterns=("*.toyimg",),
                       read="studio_toy.ops:read_toyimg")]


@hookimpl
def studio_session_event(event):
    EVENTS.append(event)


@hookimpl
def studio_commands():
    return [CommandSpec(name="toy-hello", help="print a greeting", main="studio_toy.ops:hello_main")]
