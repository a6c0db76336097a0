"""Toy plugin for the studio's own tests: tools that exercise progress, preview, cancel and failure."""

__version__ = "1.2.3"
