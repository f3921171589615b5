"""`leader` commands of this stage (registered on the shared app)."""

from __future__ import annotations

from leader.cli.app import app  # noqa: F401
