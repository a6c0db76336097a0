"""Seed and guidance sweeps for Implicit Studio (an example third-party plugin that composes tools)."""

__version__ = "0.1.0"
