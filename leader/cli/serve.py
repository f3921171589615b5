"""`leader serve` (registered on the shared app): the exported model as a CDS Hooks 2.0 service.

    leader serve --model model.onnx --jwks ehr-jwks.json --issuer https://ehr.example.org \\
        --audience https://cds.example.org/cds-services --host 0.0.0.0 --workers 2
    leader serve --model model.onnx --auth none            # 127.0.0.1 only, for a local try

Library code lives in leader.export.serve; this module only turns options into a config and calls run().
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leader.cli.app import app


@app.command()
def serve(
    model: Annotated[
        Path, typer.Option(help="The .onnx file of `leader export --onnx` (model.md beside it is served).")
    ],
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 needs --auth jwks.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes; each loads the model once.")] = 1,
    auth: Annotated[str, typer.Option(help="jwks (CDS Hooks JWTs, the default) or none (127.0.0.1 only).")] = "jwks",
    jwks: Annotated[Path | None, typer.Option(help="JSON Web Key Set of the EHRs' public keys (RS384/ES384).")] = None,
    issuer: Annotated[list[str] | None, typer.Option(help="Accepted JWT `iss` (repeat for several EHRs).")] = None,
    audience: Annotated[
        str | None, typer.Option(help="The discovery URL the EHR calls, e.g. https://cds.example.org/cds-services.")
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (413 beyond).")] = 1_000_000,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Browser origin allowed to call (repeat).")] = None,
    fhir_timeout: Annotated[float, typer.Option(help="Seconds for fetching a missing prefetch from fhirServer.")] = 5.0,
    threads: Annotated[int, typer.Option(help="onnxruntime threads per worker.")] = 1,
) -> None:
    """Serve the model over HTTP: CDS Hooks 2.0 (discovery, patient-view, order-select) and POST /v1/recommend."""
    from leader.export.serve.config import ServeConfig
    from leader.export.serve.server import run

    cfg = ServeConfig(
        model=model,
        host=host,
        port=port,
        workers=workers,
        auth=auth,
        jwks=jwks,
        issuers=issuer or [],
        audience=audience,
        max_body=max_body,
        cors_origins=cors_origin or [],
        fhir_timeout=fhir_timeout,
        threads=threads,
    )
    typer.echo(f"serving {model.name} on http://{host}:{port} ({workers} worker(s), auth {auth})", err=True)
    run(cfg)
