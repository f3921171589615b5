"""The FastAPI application of `leader serve` (`create_app(cfg)`; uvicorn workers use `app_from_env`).

Endpoints: CDS Hooks discovery, the hook and its feedback (`leader.export.serve.cds`), the plain
API (`POST /v1/recommend`), `/healthz`, `/readyz`, `/metadata`, `/model-card`, `POST /admin/reload`
and the demo EHR page under `/demo/`. Every endpoint but the probes, the model card, the demo page
and the OpenAPI schema needs a CDS Hooks JWT (`leader.export.serve.auth`) unless `--auth none`.
Bodies are read up to `--max-body` (413 beyond) and parsed by `leader.safejson`; a malformed one
gets 400 naming the field. Log lines are JSON and never hold a patient identifier, code or name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from leader.data.fhir_map import patient_record
from leader.errors import LeaderError
from leader.export.serve import cds
from leader.export.serve.auth import Refused, Verifier, load_jwks
from leader.export.serve.config import ENV_VAR, ServeConfig
from leader.export.serve.model import Loaded
from leader.safejson import JSONError, loads

log = logging.getLogger("leader.serve")
STATIC = Path(__file__).resolve().parent / "static"
HOOK_PATH = f"/cds-services/{cds.SERVICE_ID}"
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def event(name: str, **fields) -> None:
    """One JSON log line. Callers pass counts, paths, statuses and reasons: never patient data."""
    log.info(json.dumps({"ts": round(time.time(), 3), "event": name, **fields}))


def _safe_reason(message: str) -> str:
    """A reason fit for the log: quoted values (codes, field contents) are blanked."""
    return _QUOTED.sub("'…'", message)[:200]


class AccessLog:
    """ASGI middleware: one structured line per request (method, path, status, latency in ms), and a
    Server-Timing header so clients can see the time spent inside the service."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [0]

        async def send_timed(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                ms = (time.perf_counter() - start) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={ms:.3f}".encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            ms = (time.perf_counter() - start) * 1000
            event("access", method=scope["method"], path=scope["path"], status=status[0], ms=round(ms, 3))


class Service:
    """Per-worker state: the loaded model (swapped whole on reload), the verifier, counters."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.verifier = (
            Verifier(load_jwks(cfg.jwks), cfg.issuers, cfg.audience) if cfg.auth == "jwks" else None  # type: ignore[arg-type]
        )
        root = cfg.audience.rstrip("/").removesuffix("/cds-services") if cfg.audience else ""
        self.card_url = f"{root}/model-card" if root else ""
        self.model: Loaded | None = None
        self.feedback = 0
        self.reloads = 0
        self._reload_lock = asyncio.Lock()
        self.client: httpx.AsyncClient | None = None

    def load(self) -> None:
        self.model = Loaded.load(self.cfg.model, self.cfg.threads, self.card_url)
        event("model_loaded", file=self.cfg.model.name, sha256=self.model.sha256[:12], pid=os.getpid())

    async def reload(self) -> dict:
        """Load the --model file again (e.g. after an atomic rename over it) and swap it in; requests
        in flight finish on the model they started with. A file that fails to load changes nothing."""
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(Loaded.load, self.cfg.model, self.cfg.threads, self.card_url)
            except LeaderError as err:
                event("reload_failed", reason=_safe_reason(str(err)))
                raise HTTPException(409, f"reload refused, the old model keeps serving: {err}") from None
            self.model, self.reloads = new, self.reloads + 1
            event("model_reloaded", sha256=new.sha256[:12], pid=os.getpid())
            return {"reloaded": True, "sha256": new.sha256}

    def authorize(self, request: Request) -> None:
        if self.verifier is None:
            return
        try:
            self.verifier.verify(request.headers.get("authorization"), request.url.path)
        except Refused as err:
            event("auth_refused", path=request.url.path, reason=str(err))
            raise HTTPException(401, str(err), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    async def body(self, request: Request):
        """The request's JSON, read up to --max-body (413) and parsed by leader.safejson (400)."""
        length = request.headers.get("content-length")
        limit = self.cfg.max_body
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise HTTPException(413, f"request body over the {limit}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"request body over the {limit}-byte limit")
            chunks.append(chunk)
        try:
            return loads(b"".join(chunks))
        except JSONError as err:
            raise HTTPException(400, f"request body is {err}") from None

    def ready_model(self) -> Loaded:
        if self.model is None:
            raise HTTPException(503, "model not loaded yet")
        return self.model

    async def fetch(self, hook: cds.Hook) -> dict[str, object]:
        """The prefetch keys the EHR did not send, read from its fhirServer (bearer fhirAuthorization)."""
        missing = [k for k in cds.PREFETCH if k not in hook.prefetch]
        headers = {"Accept": "application/fhir+json"}
        if hook.fhir_token:
            headers["Authorization"] = f"Bearer {hook.fhir_token}"
        base = hook.fhir_server.rstrip("/")  # type: ignore[union-attr]
        assert self.client is not None

        async def one(key: str):
            response = await self.client.get(f"{base}/{cds.query(key, hook.patient_id)}", headers=headers)
            if response.status_code != 200 or len(response.content) > self.cfg.max_body * 10:
                raise HTTPException(502, f"fhirServer answered {response.status_code} for prefetch '{key}'")
            try:
                return key, cds._resource_or_bundle(loads(response.content), f"fhirServer {key}")
            except (JSONError, cds.BadRequest) as err:
                raise HTTPException(502, f"fhirServer sent no FHIR for prefetch '{key}' ({err})") from None

        try:
            got = await asyncio.wait_for(asyncio.gather(*(one(k) for k in missing)), self.cfg.fhir_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise HTTPException(504, f"fhirServer did not answer within {self.cfg.fhir_timeout:g} s") from None
        except httpx.HTTPError as err:
            raise HTTPException(502, f"fhirServer unreachable ({type(err).__name__})") from None
        return {**hook.prefetch, **dict(got)}


def create_app(cfg: ServeConfig) -> FastAPI:
    """The application for one worker; the model is loaded when it starts (lifespan)."""
    _setup_logging()
    svc = Service(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(svc.load)
        svc.client = httpx.AsyncClient(timeout=cfg.fhir_timeout, follow_redirects=False, trust_env=False)
        loop = asyncio.get_running_loop()
        try:  # kill -HUP <worker>: reload the model file (the main thread of a process only)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_quiet_reload()))
        except (RuntimeError, ValueError, NotImplementedError):
            pass
        yield
        await svc.client.aclose()
        event("shutdown", pid=os.getpid(), feedback=svc.feedback)

    async def _quiet_reload():
        try:
            await svc.reload()
        except HTTPException:
            pass  # logged by reload

    app = FastAPI(title="leader serve", version="1", lifespan=lifespan)
    app.state.service = svc
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(AccessLog)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """Readiness: the model is loaded."""
        if svc.model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "sha256": svc.model.sha256}

    def info_for(request: Request, model: Loaded) -> cds.ModelInfo:
        if model.info.card_url:
            return model.info
        return replace(model.info, card_url=str(request.base_url).rstrip("/") + "/model-card")

    @app.get("/metadata")
    async def metadata(request: Request):
        """Model card fields, label list, thresholds and test metrics."""
        svc.authorize(request)
        model = svc.ready_model()
        return {**model.metadata(), "model_card": info_for(request, model).card_url}

    @app.get("/model-card", response_class=PlainTextResponse)
    async def model_card():
        """The model card (model.md written by `leader export`), linked from every card's source."""
        card = svc.ready_model().card
        if not card:
            raise HTTPException(404, "no model card (model.md) beside the model file")
        return PlainTextResponse(card, media_type="text/markdown; charset=utf-8")

    @app.get("/cds-services")
    async def discovery(request: Request):
        """CDS Hooks discovery."""
        svc.authorize(request)
        return cds.discovery()

    @app.post(HOOK_PATH)
    async def hook(request: Request):
        """A patient-view or order-select call: prefetch (or fhirServer) -> patient record -> cards."""
        svc.authorize(request)
        body = await svc.body(request)
        try:
            call = cds.parse_hook(body)
        except cds.BadRequest as err:
            raise HTTPException(400, str(err)) from None
        model = svc.ready_model()
        prefetch = await svc.fetch(call) if any(k not in call.prefetch for k in cds.PREFETCH) else call.prefetch
        bundle = cds.merged_bundle(prefetch)
        try:
            record = patient_record(bundle, at_encounter=call.encounter_id, options=model.mapping)
        except LeaderError as err:
            event("unscorable", hook=call.hook, stage="fhir mapping", reason=_safe_reason(str(err)))
            return JSONResponse({"cards": []})
        (rec,) = model.recommender.recommend([record])
        if not rec.ok:
            event("unscorable", hook=call.hook, stage="model", reason=_safe_reason(rec.error or ""))
            return JSONResponse({"cards": []})
        current = cds.active_labels(bundle, model.labeler)
        medications = {r.get("id"): r for r in call.draft_orders if r.get("resourceType") == "Medication"}
        drafts = [
            cds.order_labels(r, medications, model.labeler)
            for r in call.draft_orders
            if r.get("resourceType") == "MedicationRequest"
        ]
        names = model.recommender.names
        # cards are plain JSON already: a JSONResponse skips FastAPI's jsonable_encoder walk over them
        return JSONResponse({"cards": cds.cards(rec, names, model.ddi, current, drafts, info_for(request, model))})

    @app.post(HOOK_PATH + "/feedback")
    async def feedback(request: Request):
        """CDS Hooks feedback on shown cards: accepted and counted (its content is not stored)."""
        svc.authorize(request)
        body = await svc.body(request)
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("card"), str) for i in items
        ):
            raise HTTPException(400, "'feedback' must be a list of objects each with a 'card' uuid")
        svc.feedback += len(items)
        event("feedback", items=len(items), total=svc.feedback)
        return {"accepted": len(items)}

    @app.post("/v1/recommend")
    async def recommend(request: Request, top_k: int | None = None):
        """Cohort-format patient(s) -> the runtime's output (one object, or a list for a list)."""
        svc.authorize(request)
        body = await svc.body(request)
        if not isinstance(body, (dict, list)) or (isinstance(body, list) and not body):
            raise HTTPException(400, "the body must be one patient object or a non-empty list of them")
        if top_k is not None and top_k < 0:
            raise HTTPException(400, "'top_k' must be 0 or more")
        model = svc.ready_model()
        patients = body if isinstance(body, list) else [body]
        results = [r.to_dict(model.recommender.names) for r in model.recommender.recommend(patients, top_k=top_k)]
        return results if isinstance(body, list) else results[0]

    @app.post("/admin/reload")
    async def admin_reload(request: Request):
        """Reload the --model file in this worker (atomic swap; a bad file keeps the old model)."""
        svc.authorize(request)
        return await svc.reload()

    if STATIC.is_dir():
        app.mount("/demo", StaticFiles(directory=STATIC, html=True), name="demo")
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the config comes in LEADER_SERVE_CONFIG (JSON)."""
    return create_app(ServeConfig.from_json(os.environ[ENV_VAR]))
