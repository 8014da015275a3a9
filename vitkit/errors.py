"""User-facing errors.

Everything a user can get wrong (a bad path, an unknown model name, a checkpoint of another model) raises
:class:`VitkitError` with a one-line message that names the problem and the fix. The CLI prints that line
and exits with status 2 instead of showing a traceback.
"""


class VitkitError(Exception):
    """An error caused by user input, with a message meant to be shown as is."""


class ConfigError(VitkitError, ValueError):
    """A model or training configuration that cannot work."""
