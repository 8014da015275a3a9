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
from typing import Callable, NoReturn, Sequence

from ._version import __version__
from .errors import VitkitError

# Modules under vitkit/commands/, in the order their commands appear in `vitkit --help`.
COMMAND_MODULES = ["inspect", "train", "explain", "bench", "interop", "shard", "serve"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default after its help (unless the help already says it); keeps the examples'
    line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, like vitkit's own: the message and where the help is."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vitkit", description="Vision Transformers for images and video.",
                    formatter_class=HelpFormatter, epilog=_examples(["vitkit train", "vitkit models",
                                                                     "vitkit train --help"]))
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
            examples: Sequence[str] = ()) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter,
                                  epilog=_examples(examples))
        sub.set_defaults(handler=handler)
        return sub

    for module in COMMAND_MODULES:
        importlib.import_module(f".commands.{module}", __package__).register(add)
    parser.commands = commands.choices  # type: ignore[attr-defined]
    return parser


def _examples(lines: Sequence[str]) -> str | None:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vitkit`` command; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the sub-command's parser, so the message points at its --help
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
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
