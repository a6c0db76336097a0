"""Colour histograms: the plugin's entry module.

Implicit Studio imports this module at start-up (entry point ``colour_histogram`` in the group
``implicit_studio.plugins``), so it imports only the standard library and ``app.api`` and does
nothing but return records. The code that computes, reads and draws is named by
``"module:attribute"`` strings and imported the first time it is needed.
"""

from app.api import BoolParam, ChoiceParam, ImageParam, IntParam, ReaderSpec, ToolSpec, ViewerSpec, hookimpl

#: The plugin API this plugin was written for: any 1.x app with x >= 0 runs it.
REQUIRES_API = "1.0"

_PKG = "studio_colour_histogram"


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="colour-histogram",
            title="Colour histogram",
            description="Counts the pixels of each colour channel in equal bins and draws the histogram.",
            group="analysis",
            params=(
                ImageParam(name="image", help="the image to analyse (a file or result:<id>)"),
                IntParam(name="bins", default=64, min=2, max=256, help="number of equal bins over 0..255"),
                ChoiceParam(name="channels", choices=("rgb", "rgb+luma", "luma"),
                            labels=("Red, green, blue", "RGB and luma", "Luma only"), default="rgb",
                            help="which channels to count; luma is the BT.601 brightness"),
                BoolParam(name="log_scale", default=False, help="plot log(1 + count) in the image"),
            ),
            run=f"{_PKG}.compute:run",
            results=("table", "image"),
            backends=("numpy",),
        )
    ]


@hookimpl
def studio_readers():
    return [
        ReaderSpec(id="netpbm-image", title="Netpbm image", patterns=("*.ppm", "*.pgm", "*.pnm"),
                   read=f"{_PKG}.reader:read_netpbm", priority=10),
        ReaderSpec(id="numpy-array-image", title="NumPy array as image", patterns=("*.npy",),
                   read=f"{_PKG}.reader:read_npy"),
    ]


#: The window shows every result of a kind with the viewer of highest priority. This viewer
#: draws histogram tables and shows any other table as a plain table, so it may stand in for the
#: studio's own plain table viewer (priority -10), but it must not push aside another plugin's
#: table viewer (default priority 0): hence a priority between the two.
VIEWER_PRIORITY = -5


@hookimpl
def studio_viewers():
    return [
        ViewerSpec(id="histogram-plot", title="Histogram plot", kind="table",
                   widget=f"{_PKG}.viewer:HistogramViewer", priority=VIEWER_PRIORITY),
    ]
