"""Options read from a stage's config dataclass, so a command states each setting once.

    from leader.cli.options import option
    def report(title: str = option(ReportConfig, "title"), ...):
        ...
        run(ReportConfig(**options))   # by keyword: every parameter is a field of the same name

`option(Config, "field")` is a `typer.Option` whose default is the field's default (required when
the field has none) and whose help is the docstring under the field (`field_docs`). Python drops
attribute docstrings at run time, so they are read from the source with `ast`, one parse per
module (`leader --help` reads every config); the libraries that do this for a CLI (tyro,
simple-parsing) replace typer rather than plug into it.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from functools import cache
from pathlib import Path

import typer


@cache
def _module_docs(path: str) -> dict[str, dict[str, str]]:
    """class name -> {field: the docstring under it} for every class of the module file `path`."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            docs = {}
            for field, after in zip(node.body, node.body[1:]):
                if (
                    isinstance(field, ast.AnnAssign)
                    and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    docs[field.target.id] = " ".join(after.value.value.split())
            out[node.name] = docs
    return out


def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (those of its dataclass bases too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_module_docs(sys.modules[klass.__module__].__file__).get(klass.__name__, {}))
    return docs


@cache
def _fields(cls) -> tuple[dict, dict]:
    return {f.name: f for f in dataclasses.fields(cls)}, field_docs(cls)


def option(cls, name: str, *flags: str, **kwargs):
    """A `typer.Option` for field `name` of dataclass `cls` (extra `flags` / `kwargs` go to typer)."""
    found, docs = _fields(cls)
    f = found[name]  # KeyError: a typo in a command is a bug, caught at import
    if "default" in kwargs:
        default = kwargs.pop("default")
    elif f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = ...
    return typer.Option(default, *flags, help=kwargs.pop("help", docs.get(name, "")), **kwargs)


def argument(cls, name: str, **kwargs):
    """A required positional `typer.Argument` for field `name` of `cls`, its help the field's docstring."""
    return typer.Argument(..., help=kwargs.pop("help", _fields(cls)[1].get(name, "")), **kwargs)
