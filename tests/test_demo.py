"""`leader demo --quick` end to end (tiny random teacher), and the README's Python snippet on its model."""

from __future__ import annotations

import re
from pathlib import Path

from leader.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_demo_writes_every_stage(quick_demo, capsys):
    names = sorted(p.name for p in quick_demo.iterdir() if not p.name.startswith("."))
    assert names == [
        "frequency",
        "logistic",
        "model.bench.json",
        "model.int8.onnx",
        "model.md",
        "model.onnx",
        "report.html",
        "student",
        "student-kd",
        "student-no-teacher",
        "synth",
        "teacher",
        "tiny-llama",
    ]
    page = (quick_demo / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # bars, counts, curves, speed


def test_quick_demo_resumes(quick_demo, capsys):
    assert main(["demo", "--quick", "--patients", "120", "--out", str(quick_demo)]) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 8  # cohort, 2 baselines, teacher + features, students, export, bench, report
    assert "student (logit KD)" in err and "runtime-only process" in err


def test_readme_python_snippet_runs(quick_demo, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(code.replace("runs/model.onnx", str(quick_demo / "model.onnx")), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[1].startswith("[(")
