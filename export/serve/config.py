"""The options of `leader serve`, checked before anything is loaded or bound."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leader.errors import LeaderError

LOCAL_HOST = "127.0.0.1"
AUTH_MODES = ("jwks", "none")
ENV_VAR = "LEADER_SERVE_CONFIG"
"""Environment variable carrying the config (JSON) to each uvicorn worker process."""


@dataclass
class ServeConfig:
    """Options of `leader serve`."""

    model: Path
    """The .onnx file of `leader export --onnx` (the model card model.md beside it is served too)."""
    host: str = LOCAL_HOST
    """Address to bind; anything but 127.0.0.1 needs --auth jwks."""
    port: int = 8080
    """TCP port (0: any free port, for tests)."""
    workers: int = 1
    """uvicorn worker processes; each loads the model once."""
    auth: str = "jwks"
    """jwks: every request carries a JWT signed by a key of --jwks (CDS Hooks); none: no check (127.0.0.1 only)."""
    jwks: Path | None = None
    """JSON Web Key Set file holding the EHRs' public keys (RS384 / ES384)."""
    issuers: list[str] = field(default_factory=list)
    """Accepted `iss` values of the JWTs (the EHRs allowed to call); repeat --issuer for several."""
    audience: str | None = None
    """The discovery URL as the EHR sees it (e.g. https://cds.example.org/cds-services): the JWTs' `aud`."""
    max_body: int = 1_000_000
    """Largest request body in bytes; larger ones get 413."""
    cors_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to call (CORS), one exact origin per --cors-origin; none by default."""
    fhir_timeout: float = 5.0
    """Seconds allowed for the FHIR server fetch when a hook comes without its prefetch."""
    threads: int = 1
    """Threads per worker that run pieces of a batch side by side (one request is one piece: 1 suffices)."""

    def __post_init__(self) -> None:
        self.model = Path(self.model)
        self.jwks = Path(self.jwks) if self.jwks is not None else None
        self.issuers, self.cors_origins = list(self.issuers), list(self.cors_origins)
        if not self.model.is_file():
            raise LeaderError(f"--model {self.model} not found; give the .onnx file of `leader export --onnx`")
        if self.auth not in AUTH_MODES:
            raise LeaderError(f"--auth must be one of {', '.join(AUTH_MODES)}, got '{self.auth}'")
        if self.auth == "none" and self.host != LOCAL_HOST:
            raise LeaderError(
                f"--auth none is refused on --host {self.host}: bind to {LOCAL_HOST} or use --auth jwks with --jwks"
            )
        if self.auth == "jwks":
            if self.jwks is None or not self.jwks.is_file():
                raise LeaderError(f"--auth jwks needs --jwks FILE (the EHR's public JSON Web Key Set); got {self.jwks}")
            if not self.issuers:
                raise LeaderError("--auth jwks needs at least one --issuer (the `iss` of the EHR's tokens)")
            if not self.audience or not self.audience.startswith(("https://", "http://")):
                raise LeaderError(
                    "--auth jwks needs --audience URL, the discovery URL the EHR calls "
                    "(e.g. https://cds.example.org/cds-services): it must equal the tokens' `aud`"
                )
        if not 0 <= self.port <= 65535:
            raise LeaderError(f"--port must be 0-65535, got {self.port}")
        if self.workers < 1 or self.threads < 1:
            raise LeaderError(f"--workers and --threads must be at least 1, got {self.workers} and {self.threads}")
        if self.max_body < 1024:
            raise LeaderError(f"--max-body must be at least 1024 bytes, got {self.max_body}")
        if not self.fhir_timeout > 0:
            raise LeaderError(f"--fhir-timeout must be positive, got {self.fhir_timeout}")
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise LeaderError(f"--cors-origin '{origin}' must be one exact origin like https://ehr.example.org")

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        from leader.safejson import loads

        return cls(**loads(text))
