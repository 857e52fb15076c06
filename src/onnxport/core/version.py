"""The package version, in a module of its own so every layer can read it without
importing the `onnxport` facade (which would make a cycle)."""

__version__ = "0.1.0"
