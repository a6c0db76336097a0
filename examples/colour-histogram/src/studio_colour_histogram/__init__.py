"""Colour histograms for Implicit Studio (an example third-party plugin)."""

__version__ = "0.2.0"
