"""A plugin whose import fails."""

from app.api import hookimpl  # noqa: F401

raise ImportError("studio_broken needs the package 'nonexistent-dependency'")
