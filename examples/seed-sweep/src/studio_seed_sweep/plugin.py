"""Seed and guidance sweep: the plugin's entry module.

Implicit Studio imports this module at start-up (entry point ``seed_sweep`` in the group
``implicit_studio.plugins``), so it imports only ``app.api`` and returns records. The sweep itself
(``compute.py``) is imported the first time the tool runs, and it does not draw a single image on
its own: it runs the studio's ``text-to-image`` tool once per cell through ``ctx.run_tool``.
"""

from app.api import (BoolParam, FloatListParam, IntParam, ModelParam, SeedListParam, SettingsSpec, TextParam,
                     ToolSpec, hookimpl)

#: ctx.run_tool, the list parameters, required and seeded=False came with plugin API 1.2.
REQUIRES_API = "1.2"

_PKG = "studio_seed_sweep"

#: The settings section: kebab-case, like every id in the studio (``seed_sweep`` is refused).
SETTINGS = "seed-sweep"


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="seed-guidance-sweep",
            title="Seed and guidance sweep",
            description="Runs text-to-image once for every seed and guidance value and lays the pictures out "
                        "on a contact sheet (a row per guidance value, a column per seed). Each picture is a "
                        "run of its own, listed under the sweep in the history.",
            group="generate",
            params=(
                TextParam(name="prompt", multiline=True, required=True, help="what to draw"),
                TextParam(name="negative_prompt", multiline=True, help="what to steer away from"),
                SeedListParam(name="seeds", default=(1, 2, 3), min_items=1, max_items=64,
                              help="one column per seed: 1, 2, 10-13 (-1 draws a random one)"),
                FloatListParam(name="guidance", default=(3.0, 7.5), min=0.0, max=50.0, min_items=1, max_items=16,
                               help="one row per guidance scale: 3, 7.5 or 2-8:2"),
                IntParam(name="steps", default=20, min=1, max=1000, help="denoising steps of every picture"),
                ModelParam(name="model", default="default", help="the text-to-image model of every picture"),
                IntParam(name="cell_size", default=256, min=32, max=1024, step=32, advanced=True,
                         help="longest side of a picture on the sheet, in pixels"),
            ),
            run=f"{_PKG}.compute:sweep",
            results=("image", "table"),
            # it runs a torch tool: so it runs on the accelerator's queue, one job at a time with it
            backends=("torch",),
            # no run-level seed: the seeds are the list above, each recorded with its own picture
            seeded=False,
        )
    ]


@hookimpl
def studio_settings():
    return [SettingsSpec(section=SETTINGS, title="Seed and guidance sweep",
                         params=(BoolParam(name="captions", default=True,
                                           help="write the seeds and guidance values around the contact sheet"),))]
