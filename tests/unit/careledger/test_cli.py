"""A CLI people can discover (issue 16.6): ``--version``, and help text on every subcommand and
every option, checked by walking the whole argparse tree."""

from __future__ import annotations

import argparse

import pytest

from careledger.cli import build_parser, main, version


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[str]:
    missing = []
    if not parser.description:
        missing.append(f"{' '.join(path)}: no description on its --help page")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction) and action.help:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{' '.join((*path, name))}: no help in the command list")
                missing += _walk(subparser, (*path, name))
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    return missing


def test_every_subcommand_and_option_has_help() -> None:
    parser = build_parser()
    assert _walk(parser, ("careledger",)) == []
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for expected in ("up", "down", "process", "export", "ingest", "import-csv", "replay", "token", "serve"):
        assert expected in commands


def test_the_walk_finds_a_missing_help() -> None:
    parser = argparse.ArgumentParser(prog="x", description="x")
    sub = parser.add_subparsers()
    child = sub.add_parser("child")
    child.add_argument("--quiet")
    assert _walk(parser, ("x",)) == ["x child: no help in the command list", "x child: no description on its --help page",
                                     "x child --quiet: no help"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"careledger {version()}"
    assert version()[0].isdigit()


@pytest.mark.parametrize("command", ["up", "down", "process", "export"])
def test_the_commands_the_issue_named_explain_themselves(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    page = capsys.readouterr().out
    description = page.split("\n\n")[1]
    assert len(description.split()) >= 5, page
