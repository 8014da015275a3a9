"""The ``vitkit`` command: a thin layer over the Python API.

Each group of sub-commands lives in ``vitkit/commands/<topic>.py`` and exposes ``register(add)``, where
``add(name, handler, help)`` returns an ``argparse`` sub-parser. User mistakes raise :class:`VitkitError`;
``main`` prints their one-line message and exits with status 2 instead of showing a traceback; anything
else is a bug, reported in one line with status 1 (``VITKIT_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Callable, Sequence

from ._version import __version__
from .errors import VitkitError

# Modules under vitkit/commands/, in the order their commands appear in `vitkit --help`.
COMMAND_MODULES = ["inspect", "train", "explain", "bench", "interop", "shard"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitkit", description="Vision Transformers for images and video.")
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    for module in COMMAND_MODULES:
        importlib.import_module(f".commands.{module}", __package__).register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vitkit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except VitkitError as error:
        print(f"vitkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitkit: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last resort: a bug must not dump a traceback on the user
        if os.environ.get("VITKIT_DEBUG"):
            raise
        where = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]
        print(f"vitkit: internal error: {where[:300]} (a bug in vitkit: rerun with VITKIT_DEBUG=1 for the "
              "traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
