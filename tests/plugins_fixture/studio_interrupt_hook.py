"""A plugin whose studio_readers hook raises KeyboardInterrupt."""

from app.api import hookimpl


@hookimpl
def studio_readers():
    raise KeyboardInterrupt
