"""Sub-commands of the ``vitkit`` CLI, one module per topic (see ``vitkit/cli.py``)."""
