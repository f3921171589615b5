"""One CLI -> config path (issue 15, item 3).

Every command builds its stage's config dataclass by keyword from options declared with
`leader.cli.options.option` / `argument`, so each setting's default and help are written once, in
the dataclass: every field is an option (unless listed as internal, with the reason), every
option is a field with the field's default and docstring as help (a hand-written `typer.Option`
fails here), each option given on the command line reaches the config field of its name, and
the configs are light enough that `import leader.cli` pulls in no heavy library.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import typer.main

from leader.cli import main
from leader.cli.app import app
from leader.cli.options import field_docs
from leader.config import BaselineConfig, DemoConfig, EvaluateConfig, ReportConfig, ResultsConfig
from leader.data.config import EicuConfig, FhirConfig, JsonlConfig, MimicConfig, OmopConfig, StatsConfig, SynthConfig
from leader.export.config import BenchConfig, ExportConfig, PredictConfig
from leader.export.serve.config import ServeConfig
from leader.student.config import DistillConfig
from leader.teacher.config import FeaturesConfig, RefitConfig, TeachConfig

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "baseline": BaselineConfig,
    "evaluate": EvaluateConfig,
    "results": ResultsConfig,
    "report": ReportConfig,
    "demo": DemoConfig,
    "distill": DistillConfig,
    "teach": TeachConfig,
    "teach features": FeaturesConfig,
    "teach refit": RefitConfig,
    "export": ExportConfig,
    "predict": PredictConfig,
    "bench": BenchConfig,
    "serve": ServeConfig,
    "data mimic3": MimicConfig,
    "data mimic4": MimicConfig,
    "data eicu": EicuConfig,
    "data omop": OmopConfig,
    "data fhir": FhirConfig,
    "data jsonl": JsonlConfig,
    "data synth": SynthConfig,
    "data stats": StatsConfig,
}
"""Every command of `leader` -> the config dataclass it builds."""
INTERNAL = {
    ("data mimic3", "notes"): "MIMIC-IV only (MIMIC-III reads NOTEEVENTS from --root)",
}
"""(command, field) -> why a user does not set it from the command line."""
CLI_ONLY = {
    ("export", "onnx"): "ONNX is the one format: --onnx sets nothing, it keeps the command line explicit",
}
"""(command, parameter) -> why an option is not a config field."""
OTHER_DEFAULT = {
    ("teach", "data"): "optional on the group so `leader teach features` runs without it; checked when training",
    ("teach", "out"): "as --data",
    ("teach", "target_modules"): "a comma-separated string on the command line, a tuple in the config",
}
"""(command, field) -> why the option's default differs from the field's."""
GIVEN = {("teach", "target_modules"): ("x",)}
"""(command, field) -> what the config receives for the test's value 'x' when the command converts it."""


def _commands(command=None, path: tuple[str, ...] = ()):
    """(path, click command) of every command that builds a config (a group with its own action too)."""
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        if path and command.invoke_without_command:
            yield " ".join(path), command
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


ALL = dict(_commands())


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@dataclasses.dataclass
class _Base:
    first: int = 1
    """The first
    field, on two lines."""


@dataclasses.dataclass
class _Child(_Base):
    second: str = ""
    """The second field."""
    third: int = 3
    not_a_doc = "x"


def test_field_docs_reads_the_docstring_under_each_field():
    assert field_docs(_Child) == {"first": "The first field, on two lines.", "second": "The second field."}


def test_every_command_is_listed():
    assert set(ALL) == set(COMMANDS), "a command without a config here: give it one (leader/config.py, ...)"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_config_field_is_an_option_with_help(path):
    config = COMMANDS[path]
    params = {p.name: p for p in ALL[path].params}
    missing = []
    for f in dataclasses.fields(config):
        if (path, f.name) in INTERNAL:
            continue
        param = params.get(f.name)
        if param is None or not (getattr(param, "help", None) or "").strip():
            missing.append(f.name)
    assert not missing, f"`leader {path}`: {config.__name__} fields without an option (or its help): {missing}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_option_is_a_field_with_its_default_and_help(path):
    """Stated once: an option's default and help are its field's (a hand-written option fails)."""
    config = COMMANDS[path]
    found, docs = {f.name: f for f in dataclasses.fields(config)}, field_docs(config)
    for param in ALL[path].params:
        if (path, param.name) in CLI_ONLY:
            continue
        assert param.name in found, f"`leader {path}`: --{param.name} is not a field of {config.__name__}"
        assert docs.get(param.name), f"{config.__name__}.{param.name} has no docstring (the option's help)"
        assert param.help == docs[param.name], f"`leader {path}` --{param.name}: help is not the field's docstring"
        if (path, param.name) in OTHER_DEFAULT:
            continue
        default = _field_default(found[param.name])
        if default is dataclasses.MISSING:
            assert param.required, (
                f"`leader {path}` --{param.name}: the field has no default, the option must be required"
            )
        else:
            assert not param.required and param.default == default, (path, param.name, param.default, default)


def test_exceptions_name_real_fields_and_parameters():
    for (path, name), why in {**INTERNAL, **OTHER_DEFAULT}.items():
        assert name in {f.name for f in dataclasses.fields(COMMANDS[path])} and why
    for (path, name), why in CLI_ONLY.items():
        assert name in {p.name for p in ALL[path].params} and why


def _value(hint, name: str, default, tmp_path: Path):
    """A value of type `hint` (a field's annotation) unlike `default`, for the option `name`."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(hint)) - {type(None)} if union else {hint}
    if any(typing.get_origin(kind) is list for kind in kinds):
        [kind] = kinds
        return [_value(typing.get_args(kind)[0], name, None, tmp_path)]
    if int in kinds:
        return 8 if default == 7 else 7
    if float in kinds:
        return 0.25
    if Path in kinds:
        return tmp_path / name
    return "x"


def _argv(path: str, tmp_path: Path) -> tuple[list[str], dict]:
    """A command line giving every option of `path` a value unlike its default, and the values
    its config fields must receive."""
    hints = typing.get_type_hints(COMMANDS[path])
    argv, expect = path.split(), {}
    for param in ALL[path].params:
        if (path, param.name) in CLI_ONLY:
            continue
        if getattr(param, "is_flag", False):
            value = True if param.default is None else not param.default
            if value:
                argv.append(param.opts[0])
            elif param.secondary_opts:
                argv.append(param.secondary_opts[0])
            else:
                continue  # on by default without a --no- form: nothing to give
        else:
            value = _value(hints[param.name], param.name, param.default, tmp_path)
            words = [str(v) for v in value] if isinstance(value, list) else [str(value)]
            for word in words:
                argv += [word] if param.param_type_name == "argument" else [param.opts[0], word]
        expect[param.name] = GIVEN.get((path, param.name), value)
    return argv, expect


class _Built(Exception):
    pass


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_each_option_reaches_its_config_field(path, tmp_path, monkeypatch):
    """The command builds its config by keyword from its options (a positional build or a
    dropped option fails); the stage itself never runs."""
    config, module = COMMANDS[path], sys.modules[ALL[path].callback.__module__]
    seen: dict = {}

    def record(*args, **kwargs):
        assert not args, f"`leader {path}` builds {config.__name__} by position"
        seen.update(kwargs)
        raise _Built

    assert getattr(module, config.__name__) is config
    monkeypatch.setattr(module, config.__name__, record)
    argv, expect = _argv(path, tmp_path)
    with pytest.raises(_Built):
        main(argv)
    # DistillConfig types its folders as str (it stores them JSON-ready); its command passes Paths
    assert {k: str(v) if isinstance(v, Path) else v for k, v in seen.items()} == {
        k: str(v) if isinstance(v, Path) else v for k, v in expect.items()
    }


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


def test_cli_imports_no_heavy_library():
    """`leader --help` reads every config: none of them may pull in a stage's heavy imports."""
    code = (
        "import sys, leader.cli\n"
        "heavy = ('torch', 'transformers', 'onnx', 'onnxruntime', 'polars', 'fastapi', 'uvicorn', 'duckdb', 'numpy')\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "", f"imported by `import leader.cli`: {done.stdout.strip()}"
