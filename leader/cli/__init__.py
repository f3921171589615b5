"""Command line: `leader --help`. Each stage's commands live in their own module here.

Heavy imports (torch, transformers) happen inside the commands so `leader --help` stays instant.
A `LeaderError` ends the command with its message on one line and exit code 2.
"""

from __future__ import annotations

import sys

from leader.cli import data, demo, distill, evaluate, export, serve, teach  # noqa: F401  (register commands)
from leader.cli.app import app
from leader.errors import LeaderError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except LeaderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception as err:
        # usage errors (a missing option, an unknown command) come from click, or from the copy of
        # click that newer typer releases ship as typer._click: recognise either by its interface
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            return 2 if err.exit_code not in (0, None) else 0
        if type(err).__name__ == "Abort":
            return 1
        raise
    return 0


def _entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
