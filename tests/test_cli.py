"""The ``curriculum`` command's own surface: its version and help texts."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from curriculum.cli import _parser, main

MARKUP = re.compile(r"``|:(class|mod|func|meth|attr|data):`")


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"curriculum {version('curriculum-pool')}"


def test_help_texts_have_no_rest_markup() -> None:
    for parser in all_parsers(_parser()):
        text = parser.format_help()
        assert not MARKUP.search(text), f"{parser.prog}:\n{text}"


def test_every_option_and_command_is_described() -> None:
    for parser in all_parsers(_parser()):
        assert parser.description, f"{parser.prog} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{parser.prog} {choice.dest} has no help"
            elif action.help != argparse.SUPPRESS:
                assert action.help, f"{parser.prog} {action.option_strings} has no help"


def test_demo_help_describes_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for words in ("simulated student", "learning progress", "uniform", "PNG", "--seed"):
        assert words in text, words
