"""ccxray: a local recording proxy for AI coding agents."""

__version__ = "0.1.0"
