"""Every command in README.md is a real command with real options.

Each `leader ...` line of the README's bash blocks (and the `-m leader ...` part of an
`accelerate launch` line) is parsed by the CLI itself, so a renamed command or flag fails here.
The chain itself runs in tests/test_demo.py (`leader demo --quick` runs the same stages) and the
Python snippet runs there against a real exported model.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from leader.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            words = shlex.split(line, comments=True) if line else []
            if words[:1] == ["leader"]:
                commands.append(words[1:])
            elif words[:2] == ["accelerate", "launch"]:
                commands.append(words[words.index("leader") + 1 :])
            elif words[:1] == ["make"]:
                commands.append(words)
    return commands


COMMANDS = readme_commands()


def test_readme_shows_the_two_commands_first():
    assert COMMANDS[:2] == [["make", "demo"], ["make", "test"]]
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_parses(words):
    if words[0] == "make":
        targets = re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets
        return
    command = typer.main.get_command(app)
    context = None
    args = list(words)
    # walk down the command groups, then let click parse the options of the leaf command
    while hasattr(command, "commands") and args and args[0] in command.commands:
        name = args.pop(0)
        command = command.commands[name]
    if hasattr(command, "commands") and args and not args[0].startswith("-"):
        pytest.fail(f"unknown subcommand in README: leader {' '.join(words)}")
    context = command.make_context(
        "leader " + " ".join(words[: len(words) - len(args)]), list(args)
    )  # click empties it
    # every option the README passes reaches the parameter it names, with the README's value
    by_flag = {flag: p for p in command.params for flag in (*p.opts, *p.secondary_opts)}
    for i, word in enumerate(args):
        if not word.startswith("--"):
            continue
        flag, _, inline = word.partition("=")
        param = by_flag.get(flag)
        assert param is not None, f"{flag} is not an option of leader {' '.join(words)}"
        got = context.params[param.name]
        if param.is_flag:
            assert got == (flag in param.opts), flag
        else:
            given = inline or args[i + 1]
            if param.multiple:
                assert param.process_value(context, (given,))[0] in got, (flag, got, given)
            else:
                assert got == param.process_value(context, given), (flag, got, given)
