"""One CLI -> config path (issue 15, item 3): every field of a command's config dataclass is an
option of that command, with help text in --help, unless it is listed here as internal (with the
reason); the command builds its config by keyword from its options."""

from __future__ import annotations

import importlib
from dataclasses import fields

import pytest
import typer

from leader.cli import main
from leader.cli.app import app

COMMANDS = {
    "baseline": ("leader.baseline", "BaselineConfig"),
    "distill": ("leader.student.config", "DistillConfig"),
    "teach": ("leader.teacher.config", "TeachConfig"),
    "export": ("leader.export.onnx_export", "ExportConfig"),
    "predict": ("leader.export.predict", "PredictConfig"),
    "bench": ("leader.export.bench", "BenchConfig"),
    "report": ("leader.report", "ReportConfig"),
    "demo": ("leader.demo", "DemoConfig"),
    "data mimic3": ("leader.data.common", "MimicConfig"),
    "data mimic4": ("leader.data.common", "MimicConfig"),
    "data eicu": ("leader.data.eicu", "EicuConfig"),
    "data omop": ("leader.data.omop", "OmopConfig"),
    "data fhir": ("leader.data.fhir", "FhirConfig"),
    "data jsonl": ("leader.data.jsonl", "JsonlConfig"),
}
"""Command -> (module, config dataclass). `leader serve` (ServeConfig) has its own tests."""
INTERNAL = {
    ("data mimic3", "notes"): "MIMIC-IV only (MIMIC-III reads NOTEEVENTS from --root)",
}
"""(command, field) -> why a user does not set it from the command line."""


def _command(path: str):
    command = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_config_field_is_an_option_with_help(path):
    module, name = COMMANDS[path]
    config = getattr(importlib.import_module(module), name)
    params = {p.name.rstrip("_"): p for p in _command(path).params}
    missing = []
    for f in fields(config):
        if (path, f.name) in INTERNAL:
            continue
        param = params.get(f.name)
        if param is None or not (getattr(param, "help", None) or "").strip():
            missing.append(f.name)
    assert not missing, f"`leader {path}`: {name} fields without an option (or its help): {missing}"


def test_internal_fields_exist():
    for (path, field_name), why in INTERNAL.items():
        module, name = COMMANDS[path]
        assert field_name in {f.name for f in fields(getattr(importlib.import_module(module), name))} and why


def test_help_shows_the_new_options(capsys):
    for path, flags in {
        "baseline": ("--patience", "--batch-size"),
        "export": ("--max-drop",),
        "report": ("--title",),
        "bench": ("--batch-calls", "--teacher-samples"),
    }.items():
        assert main([*path.split(), "--help"]) == 0
        shown = capsys.readouterr().out
        assert all(flag in shown for flag in flags), (path, flags)


def test_options_reach_the_config(monkeypatch, tmp_path):
    """The CLI passes each option to its config by keyword (a positional build would shift them)."""
    seen = {}
    import leader.demo
    import leader.report

    monkeypatch.setattr(leader.report, "run", lambda cfg: seen.setdefault("report", cfg) and tmp_path / "r.html")
    monkeypatch.setattr(leader.demo, "run", lambda cfg: seen.setdefault("demo", cfg))
    argv = [
        "report",
        str(tmp_path),
        "--out",
        str(tmp_path / "r.html"),
        "--split",
        "val",
        "--title",
        "T",
        "--with-teacher",
    ]
    assert main(argv) == 0
    cfg = seen["report"]
    assert (cfg.runs, cfg.out, cfg.split, cfg.title, cfg.with_teacher) == (
        [tmp_path],
        tmp_path / "r.html",
        "val",
        "T",
        True,
    )
    assert main(["demo", "--out", str(tmp_path / "d"), "--seed", "3", "--teacher-minutes", "2", "--quick"]) == 0
    cfg = seen["demo"]
    assert (cfg.out, cfg.seed, cfg.teacher_minutes, cfg.quick, cfg.patients) == (tmp_path / "d", 3, 2.0, True, None)
