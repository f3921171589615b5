"""The CLI's own contract: usage errors end in exit code 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys

from leader.cli import main


def test_usage_errors_exit_2(capsys):
    assert main(["predict"]) == 2
    assert "Missing option '--model'" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0


def test_module_entry_point_reports_user_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "leader", "data", "stats", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
