"""`edge-llama --help` and every `edge-llama COMMAND --help` describe every option."""

from __future__ import annotations

import argparse

import pytest

from edge_llama.cli.main import SUBCOMMANDS, build_parser, main


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    return dict(build_parser().subcommand_parsers)


def test_top_level_help_lists_every_command_with_a_description(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parsers = subcommand_parsers()
    assert len(parsers) == len(SUBCOMMANDS)
    commands = build_parser()._subparsers._group_actions[0]._choices_actions
    for action in commands:
        assert action.help and action.dest in text and action.help.split()[0] in text
    assert "Exit codes" in text


@pytest.mark.parametrize("command", sorted(subcommand_parsers()))
def test_every_option_has_a_description(command, capsys):
    parser = subcommand_parsers()[command]
    assert parser.description, f"edge-llama {command} has no description"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"edge-llama {command}: {action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text
    assert "--verbose" in text and "--quiet" in text
