"""Implicit Studio: the application package (services layer and Qt views)."""

__version__ = "0.1.0"
