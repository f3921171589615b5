"""Run `leader serve`: uvicorn with N worker processes, each loading the model once.

SIGTERM or Ctrl-C: uvicorn stops accepting, lets requests in flight finish (up to
`GRACEFUL_SECONDS`), then exits. SIGHUP: with one worker, the worker reloads the model file (an
atomic swap, see `app.Service.reload`); with several, uvicorn's supervisor replaces the workers one
by one, starting each replacement (which loads the file anew) before retiring the old one.
`POST /admin/reload` reloads the worker that receives it only.
"""

from __future__ import annotations

import os

from leader.errors import LeaderError
from leader.export.serve.config import ENV_VAR, ServeConfig

GRACEFUL_SECONDS = 30


def check_installed() -> None:
    """LeaderError naming the extra when the serving packages are missing."""
    try:
        import fastapi  # noqa: F401
        import jwt  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise LeaderError(
            f"leader serve needs the [serve] extra ({err.name} missing); pip install 'leader[serve]'"
        ) from None


def run(cfg: ServeConfig) -> None:
    """Serve until stopped. The JWKS file and the model are checked before the port is bound."""
    check_installed()
    import uvicorn

    from leader.export.serve.auth import load_jwks
    from leader.export.serve.model import Loaded

    if cfg.jwks is not None and cfg.auth == "jwks":
        load_jwks(cfg.jwks)
    Loaded.load(cfg.model, cfg.threads, "")  # a bad file is one line and exit 2 here, not a crash per worker
    os.environ[ENV_VAR] = cfg.to_json()
    uvicorn.run(
        "leader.export.serve.app:app_from_env",
        factory=True,
        host=cfg.host,
        port=cfg.port,
        workers=cfg.workers,
        access_log=False,  # our own access log (app.AccessLog) has latency and no client address
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
        log_level="warning",
    )
