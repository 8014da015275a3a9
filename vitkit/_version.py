"""vitkit's version, in a module of its own so that nothing inside vitkit imports the package root for it
(``pyproject.toml`` reads it from here too)."""

__version__ = "0.1.0"
