"""Options read from a stage's config dataclass, so a command states each setting once.

    from leader.cli.options import option
    def report(title: str = option(ReportConfig, "title"), ...):
        ...
        run(ReportConfig(**options))   # by keyword: every parameter is a field of the same name

`option(Config, "field")` is a `typer.Option` whose default is the field's default (required when
the field has none) and whose help is the docstring under the field. The docstrings are read with
`leader.teacher.config.field_docs` (`ast` over the dataclass source): no library reads attribute
docstrings at run time (Python drops them), and the ones that do it for a CLI (tyro,
simple-parsing) replace typer rather than plug into it.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import typer

from leader.teacher.config import field_docs


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
