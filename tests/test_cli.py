"""The command line as a newcomer meets it: every option explained with its default, fixed sets as choices, an
example per command, one-line errors, and error messages that only name flags that exist."""

from __future__ import annotations

import argparse
import re

import pytest

from conftest import REPO, run_cli
from vitkit.cli import build_parser

# Options of other programs that vitkit's messages name (pip, torchrun).
OTHER_PROGRAMS = {"--no-deps", "--force-reinstall", "--nproc-per-node"}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_command_has_examples_and_every_argument_has_help(command: str) -> None:
    parser = subparsers()[command]
    assert parser.epilog and parser.epilog.startswith("examples:") and f"vitkit {command}" in parser.epilog
    undocumented = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._HelpAction)]
    assert undocumented == [], f"vitkit {command}: no help text for {undocumented}"


def test_options_that_take_a_fixed_set_of_values_are_choices() -> None:
    fixed = {"train": ["--task", "--precision", "--crop", "--augment", "--frame-sampling", "--inflate", "--heap"],
             "eval": ["--heap"], "predict": ["--format", "--heap"], "explain": ["--method"],
             "convert": ["--to"], "export": ["--format"]}
    for command, flags in fixed.items():
        actions = {s: a for a in options(subparsers()[command]) for s in a.option_strings}
        missing = [f for f in flags if not actions[f].choices]
        assert missing == [], f"vitkit {command}: {missing} take a fixed set of values but list no choices"


def test_train_help_shows_the_effective_defaults_and_choices() -> None:
    text = subparsers()["train"].format_help()
    for shown in ["--task {image,video,segmentation3d}", "--augment {trivial,randaugment,none}", "--precision {auto,bf16,fp32}",
                  "(default: 30; 40 for the embedded mnist-5k)", "(default: vit_ti16; vit_mnist for the embedded",
                  "(default: 9)", "examples:",
                  "(default: the --init checkpoint's, else the embedded dataset's, 1.0 for mnist-5k, else 0.875)"]:
        assert shown in " ".join(text.split()), f"`vitkit train --help` does not show {shown!r}:\n{text}"
    assert "(default: None)" not in text


def test_every_option_with_a_default_shows_it() -> None:
    for command, parser in subparsers().items():
        for action in options(parser):
            if action.default not in (None, False) and action.nargs != 0:
                help_text = parser._get_formatter()._expand_help(action)
                assert "default" in help_text, f"vitkit {command} {action.option_strings[0]}: default not shown"


@pytest.mark.parametrize("argv, says", [
    (["train", "--nope"], "unrecognized arguments: --nope"),
    (["train", "--augment", "auto"], "invalid choice: 'auto'"),
    (["eval"], "the following arguments are required"),
    (["convert", "x", "y"], "--to"),
    ([], "COMMAND"),
])
def test_an_argparse_error_is_one_line_that_points_at_help(argv: list[str], says: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    command = f"vitkit {argv[0]}" if argv else "vitkit"
    assert lines[0].endswith(f"(see `{command} --help`)"), lines[0]


def test_error_messages_only_name_flags_that_exist() -> None:
    parser = build_parser()
    known = {s for a in parser._actions for s in a.option_strings}
    for sub in subparsers().values():
        known |= {s for a in sub._actions for s in a.option_strings}
    named = {}
    for path in sorted((REPO / "vitkit").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
                named.setdefault(flag, f"{path.relative_to(REPO)}:{number}")
    unknown = {f: where for f, where in named.items() if f not in known | OTHER_PROGRAMS}
    assert unknown == {}, f"messages name flags no vitkit command has: {unknown}"
