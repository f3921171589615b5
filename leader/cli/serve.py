"""`leader serve` (registered on the shared app): the exported model as a CDS Hooks 2.0 service.

    leader serve --model model.onnx --jwks ehr-jwks.json --issuer https://ehr.example.org \\
        --audience https://cds.example.org/cds-services --host 0.0.0.0 --workers 2
    leader serve --model model.onnx --auth none            # 127.0.0.1 only, for a local try

Each option is a field of `leader.export.serve.config.ServeConfig` (its default and help come from
there, `leader.cli.options`); library code lives in leader.export.serve.
"""

from __future__ import annotations

from pathlib import Path

import typer

from leader.cli.app import app
from leader.cli.options import option
from leader.export.serve.config import ServeConfig


@app.command()
def serve(
    model: Path = option(ServeConfig, "model"),
    host: str = option(ServeConfig, "host"),
    port: int = option(ServeConfig, "port"),
    workers: int = option(ServeConfig, "workers"),
    auth: str = option(ServeConfig, "auth"),
    jwks: Path | None = option(ServeConfig, "jwks"),
    issuers: list[str] = option(ServeConfig, "issuers", "--issuer"),
    audience: str | None = option(ServeConfig, "audience"),
    max_body: int = option(ServeConfig, "max_body"),
    cors_origins: list[str] = option(ServeConfig, "cors_origins", "--cors-origin"),
    fhir_timeout: float = option(ServeConfig, "fhir_timeout"),
    threads: int = option(ServeConfig, "threads"),
) -> None:
    """Serve the model over HTTP: CDS Hooks 2.0 (discovery, patient-view, order-select) and POST /v1/recommend."""
    cfg = ServeConfig(**locals())  # every parameter is a ServeConfig field of the same name
    from leader.export.serve.server import run

    typer.echo(f"serving {model.name} on http://{host}:{port} ({workers} worker(s), auth {auth})", err=True)
    run(cfg)
