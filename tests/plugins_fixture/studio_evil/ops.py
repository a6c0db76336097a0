"""Run functions of studio_evil."""

import os
import sys

from app.api import ParamError


def exit_run(ctx, code=0):
    ctx.progress(1, 2, "about to exit")
    sys.exit(code)


def interrupt_run(ctx):
    ctx.progress(1, 2, "about to interrupt")
    raise KeyboardInterrupt


def abort_run(ctx):
    ctx.progress(1, 2, "about to abort")
    os.abort()


def param_error_run(ctx, width=64):
    raise ParamError(f"Width: {width} needs more memory than this machine has; use at most 512", "width")
