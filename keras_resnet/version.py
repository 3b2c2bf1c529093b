"""The package's version, which every saved model and run records."""

__version__ = "0.1.0"
