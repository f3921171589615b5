"""`leader serve`: a real uvicorn on 127.0.0.1 (a subprocess of `leader serve`) called with httpx.

CDS Hooks discovery, patient-view and order-select with the Synthea Bundles of
shared/data/fhir-r4-synthea/bundles turned into prefetch, the fhirServer path against a local FHIR
stub, JWT accept/reject, 400/413, the plain API, reload, SIGTERM, and a grep of the server's whole
log for the fixtures' identifiers, names and codes. The model is the session's tiny exported
student (tests/conftest.py `exported`); a copy with every threshold at 0 recommends every class, so
the DDI cards have something to warn about.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import onnx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from leader.export.onnx_export import set_metadata
from leader.export.runtime import PREFIX
from tests.conftest import shared_data

ISSUER = "https://ehr.test"
BUNDLES = shared_data("fhir-r4-synthea", "bundles")
TYPES = {
    "Encounter": "encounters",
    "Condition": "conditions",
    "Procedure": "procedures",
    "MedicationRequest": "medicationRequests",
    "AllergyIntolerance": "allergies",
}
HOOK = "/cds-services/leader-medication-recommendation"


def bundles() -> list[dict]:
    files = sorted(BUNDLES.glob("*.json"))
    assert files, f"no Synthea Bundles at {BUNDLES}: the serve tests need shared/data/fhir-r4-synthea/bundles"
    return [json.loads(f.read_text()) for f in files]


def prefetch_of(bundle: dict) -> tuple[str, str, dict]:
    """(patient id, latest encounter id, prefetch): a Synthea transaction Bundle split as an EHR would."""
    entries = bundle["entry"]
    patient = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    prefetch: dict = {"patient": patient}
    for rtype, key in TYPES.items():
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [e for e in entries if e["resource"]["resourceType"] == rtype],
        }
    encounters = sorted(
        (e["resource"] for e in entries if e["resource"]["resourceType"] == "Encounter"),
        key=lambda r: r["period"]["start"],
    )
    return patient["id"], encounters[-1]["id"], prefetch


def hook_body(bundle: dict, hook: str = "patient-view", **extra) -> dict:
    pid, eid, prefetch = prefetch_of(bundle)
    context = {"userId": "Practitioner/1", "patientId": pid, "encounterId": eid}
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch, **extra}


def med_request(name: str, code: str, status: str = "active", pid: str = "x") -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": str(uuid.uuid4()),
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": name}]
        },
    }


def with_thresholds(src: Path, dst: Path, value: float) -> Path:
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    meta[PREFIX + "thresholds"] = json.dumps(value)
    set_metadata(proto, meta)
    onnx.save(proto, str(dst))
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`leader serve` in a subprocess; its stderr (the whole log) goes to a file."""

    def __init__(self, tmp: Path, model: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "leader", "serve", "--model", str(model), "--port", str(self.port), *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready: " + self.log.read_text())

    def stop(self) -> int:
        """SIGTERM, then the exit status: uvicorn re-raises the signal once shut down, so -SIGTERM is clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        return 0 if code == -signal.SIGTERM else code


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": []}
    for kid, key, alg in (("rsa1", rsa_key, "RS384"), ("ec1", ec_key, "ES384")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    path = tmp_path_factory.mktemp("jwks") / "ehr-jwks.json"
    path.write_text(json.dumps(jwks))
    return {"rsa1": rsa_key, "ec1": ec_key, "other": other, "path": path}


@pytest.fixture(scope="module")
def models(exported, tmp_path_factory):
    """(model.onnx with its card, the same with every threshold at 0)."""
    folder = tmp_path_factory.mktemp("served")
    model = folder / "model.onnx"
    shutil.copy(exported, model)
    shutil.copy(exported.with_suffix(".md"), folder / "model.md")
    return model, with_thresholds(exported, folder / "all.onnx", 0.0)


@pytest.fixture(scope="module")
def server(models, keys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    live = tmp / "live.onnx"
    shutil.copy(models[1], live)
    shutil.copy(models[0].with_suffix(".md"), tmp / "live.md")
    port = free_port()
    audience = f"http://127.0.0.1:{port}/cds-services"
    args = ["--jwks", str(keys["path"]), "--issuer", ISSUER, "--audience", audience, "--max-body", "200000"]
    srv = Server(tmp, live, *args, "--cors-origin", "https://ehr.test", port=port)
    srv.audience = audience
    srv.live = live
    yield srv
    assert srv.stop() == 0


def token(srv, kid: str = "rsa1", keys=None, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": srv.audience, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **claims}
    body = {k: v for k, v in body.items() if v is not None}
    key = keys["other" if kid == "other" else kid]
    alg = "ES384" if kid == "ec1" else "RS384"
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "rsa1" if kid == "other" else kid})


def call(srv, keys, method: str, path: str, body=None, kid: str = "rsa1", **claims) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token(srv, kid, keys, **claims)}"}
    return httpx.request(method, srv.url + path, json=body, headers=headers, timeout=30)


def test_discovery_lists_the_service_on_both_hooks(server, keys):
    response = call(server, keys, "GET", "/cds-services", kid="ec1")
    assert response.status_code == 200, response.text
    services = response.json()["services"]
    assert {s["hook"] for s in services} == {"patient-view", "order-select"}
    for service in services:
        assert service["id"] == "leader-medication-recommendation"
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for key in ("encounters", "conditions", "procedures", "medicationRequests", "allergies"):
            assert prefetch[key].endswith("?patient={{context.patientId}}")


def test_patient_view_answers_cards_for_every_synthea_bundle(server, keys):
    for bundle in bundles():
        response = call(server, keys, "POST", HOOK, hook_body(bundle))
        assert response.status_code == 200, response.text
        cards = response.json()["cards"]
        info = cards[0]
        assert info["indicator"] == "info" and info["source"]["label"].startswith("leader student")
        assert info["source"]["url"] == server.audience.removesuffix("/cds-services") + "/model-card"
        # every class recommended (thresholds 0): the table lists code, WHO title and probability
        assert "| C07A | beta blocking agents |" in info["detail"] and "Limitations" in info["detail"]
        assert "Never autonomous prescribing" in info["detail"] or "Population" in info["detail"]
        warnings = sorted(c["summary"] for c in cards if c["indicator"] == "warning")
        assert any("C07A and B01A" in s or "B01A and C07A" in s for s in warnings), warnings
        assert len(info["summary"]) <= 140


def test_active_order_interacting_with_a_recommendation_is_warned(server, keys):
    body = hook_body(bundles()[0])
    pid = body["context"]["patientId"]
    body["prefetch"]["medicationRequests"]["entry"].append(
        {"resource": med_request("Warfarin Sodium 5 MG Oral Tablet", "855332", pid=pid)}
    )
    cards = call(server, keys, "POST", HOOK, body).json()["cards"]
    active = [c["summary"] for c in cards if "active B01A" in c["summary"]]
    assert "Recommended C07A interacts with active B01A" in active and all(c.startswith("Recommended") for c in active)
    body["prefetch"]["medicationRequests"]["entry"][-1]["resource"]["status"] = "stopped"
    cards = call(server, keys, "POST", HOOK, body).json()["cards"]
    assert not [c for c in cards if "active B01A" in c["summary"]]


def test_order_select_notes_drafts_outside_the_recommendation(server, keys, models, tmp_path):
    body = hook_body(bundles()[1], hook="order-select")
    pid = body["context"]["patientId"]
    drafts = [med_request("Amoxicillin 250 MG Oral Capsule", "308182", "draft", pid)]
    drafts.append(med_request("Ondansetron 4 MG Oral Tablet", "198051", "draft", pid))
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]}
    body["context"]["selections"] = [f"MedicationRequest/{drafts[0]['id']}"]
    cards = call(server, keys, "POST", HOOK, body).json()["cards"]
    notes = [c for c in cards if c["summary"].startswith("Draft order")]
    # everything is recommended by this model: J01C (amoxicillin) is in, the antiemetic's class is not
    assert len(notes) == 1 and "A04A" in notes[0]["summary"], [c["summary"] for c in cards]
    body["context"].pop("draftOrders")
    response = call(server, keys, "POST", HOOK, body)
    assert response.status_code == 400 and "context.draftOrders" in response.json()["error"]


def test_unscorable_patient_gets_no_cards(server, keys):
    body = hook_body(bundles()[0])
    for key in ("conditions", "procedures"):
        body["prefetch"][key]["entry"] = []
    body["context"].pop("encounterId")
    body["prefetch"]["medicationRequests"]["entry"] = []
    response = call(server, keys, "POST", HOOK, body)
    assert response.status_code == 200 and response.json() == {"cards": []}


class FhirStub:
    """A FHIR server answering the prefetch queries of one Synthea Bundle, bearer token required."""

    def __init__(self, bundle: dict, token: str, delay: float = 0.0) -> None:
        self.pid, _, self.prefetch = prefetch_of(bundle)
        self.token, self.delay, self.seen = token, delay, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                stub.seen.append((self.path, self.headers.get("Authorization")))
                time.sleep(stub.delay)
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                rtype, _, query = self.path.removeprefix("/fhir/").partition("?")
                if rtype == f"Patient/{stub.pid}":
                    doc = stub.prefetch["patient"]
                else:
                    key = TYPES.get(rtype)
                    doc = stub.prefetch[key] if key and query == f"patient={stub.pid}" else None
                data = json.dumps(doc).encode()
                self.send_response(200 if doc else 404)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_missing_prefetch_is_fetched_from_fhir_server(server, keys):
    bundle = bundles()[2]
    expected = call(server, keys, "POST", HOOK, hook_body(bundle)).json()["cards"]
    stub = FhirStub(bundle, "fhir-token-1")
    try:
        body = hook_body(bundle)
        del body["prefetch"]
        body["fhirServer"] = stub.url
        body["fhirAuthorization"] = {"access_token": "fhir-token-1", "token_type": "Bearer", "expires_in": 300}
        response = call(server, keys, "POST", HOOK, body)
        assert response.status_code == 200, response.text
        strip = [{k: v for k, v in c.items() if k != "uuid"} for c in response.json()["cards"]]
        assert strip == [{k: v for k, v in c.items() if k != "uuid"} for c in expected]
        assert len(stub.seen) == 6 and all(auth == "Bearer fhir-token-1" for _, auth in stub.seen)
        body["fhirAuthorization"]["access_token"] = "wrong"
        response = call(server, keys, "POST", HOOK, body)
        assert response.status_code == 502 and "401" in response.json()["error"]
        del body["fhirServer"], body["fhirAuthorization"]
        response = call(server, keys, "POST", HOOK, body)
        assert response.status_code == 400 and "prefetch.patient" in response.json()["error"]
    finally:
        stub.close()


def test_jwt_checks(server, keys):
    def status(**kwargs) -> tuple[int, str]:
        r = call(server, keys, "GET", "/cds-services", **kwargs)
        return r.status_code, r.json().get("error", "")

    assert status()[0] == 200 and status(kid="ec1")[0] == 200
    assert status(aud=server.url + "/cds-services/leader-medication-recommendation")[0] == 401  # not this path
    assert status(aud=server.url + "/cds-services/")[0] == 200
    assert status(kid="other") == (401, "bad signature")
    assert status(aud="https://elsewhere.test/cds-services") == (401, "wrong audience")
    assert status(iss="https://intruder.test") == (401, "issuer not allowed")
    assert status(exp=int(time.time()) - 60) == (401, "token expired")
    assert status(exp=int(time.time()) + 3600)[0] == 401  # longer-lived than CDS Hooks allows
    assert status(jti=None) == (401, "token lacks 'jti'")
    replayed = token(server, "rsa1", keys)
    first = httpx.get(server.url + "/cds-services", headers={"Authorization": f"Bearer {replayed}"})
    again = httpx.get(server.url + "/cds-services", headers={"Authorization": f"Bearer {replayed}"})
    assert first.status_code == 200 and again.status_code == 401 and "replayed" in again.json()["error"]
    assert httpx.get(server.url + "/cds-services").json() == {"error": "missing bearer token"}
    hs = jwt.encode({"iss": ISSUER, "aud": server.audience, "exp": time.time() + 60, "jti": "h"}, "secret" * 8, "HS256")
    assert httpx.get(server.url + "/cds-services", headers={"Authorization": f"Bearer {hs}"}).status_code == 401
    assert httpx.post(server.url + HOOK, json={}).status_code == 401
    assert httpx.get(server.url + "/healthz").status_code == 200  # probes need no token


def test_verifier_parses_each_header_once_and_keeps_its_reasons(keys, monkeypatch):
    """An EHR signs every token with the same header: it is parsed once (PyJWT's parse costs about
    as much as the signature check), and a token that shares a known header but is broken elsewhere
    still gets the reason it got before."""
    from leader.export.serve.auth import Refused, Verifier, load_jwks

    audience = "http://127.0.0.1:1/cds-services"
    verifier = Verifier(load_jwks(keys["path"]), [ISSUER], audience)
    parses = []
    parse = jwt.get_unverified_header
    monkeypatch.setattr(jwt, "get_unverified_header", lambda t: parses.append(t) or parse(t))
    srv = type("Srv", (), {"audience": audience})
    tokens = [token(srv, "rsa1", keys) for _ in range(5)]
    for t in tokens:
        assert verifier.verify(f"Bearer {t}", "/cds-services")["aud"] == audience
    assert len(parses) == 1
    header, payload, signature = tokens[0].split(".")

    def reason(text: str) -> str:
        with pytest.raises(Refused) as err:
            verifier.verify(f"Bearer {text}", "/cds-services")
        return str(err.value)

    assert reason(f"{header}.{payload}!.{signature}") == "malformed token"
    assert reason(f"{header}.{payload}") == "malformed token"
    assert reason(f"{header}.e30.{signature}") == "bad signature"
    assert reason(f"x{header}.{payload}.{signature}") == "malformed token"
    assert reason(tokens[0]) == "token replayed (jti already used)"


def test_a_loaded_model_keeps_one_bounded_drug_label_cache(models):
    """Drug names are mapped to ATC-3 once per worker, not once per hook call, and the cache of names
    (which callers choose) is bounded."""
    from leader.data.fhir_map import LABEL_CACHE
    from leader.export.serve.model import Loaded

    loaded = Loaded.load(models[0], 1, "")
    assert loaded.labeler is loaded.labeler and loaded.labeler("Warfarin Sodium 5 MG Oral Tablet") == ("B01A",)
    info = loaded.labeler.cache_info()
    assert info.maxsize == LABEL_CACHE and info.currsize >= 1


def test_bad_bodies_get_400_naming_the_field_and_big_ones_413(server, keys):
    good = hook_body(bundles()[0])
    headers = lambda: {"Authorization": f"Bearer {token(server, 'rsa1', keys)}", "Content-Type": "application/json"}  # noqa: E731
    r = httpx.post(server.url + HOOK, content=b'{"hook": ', headers=headers())
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.post(server.url + HOOK, content=b'{"a": NaN}', headers=headers())
    assert r.status_code == 400
    for path, value, field in (
        (("hook",), "medication-prescribe", "'hook'"),
        (("context", "patientId"), 7, "'context.patientId'"),
        (("prefetch", "conditions"), {"entry": []}, "'prefetch.conditions'"),
        (("prefetch", "encounters", "entry"), "x", "'prefetch.encounters.entry'"),
        (("fhirServer",), "file:///etc/passwd", "'fhirServer'"),
    ):
        body = copy.deepcopy(good)
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        r = httpx.post(server.url + HOOK, json=body, headers=headers())
        assert r.status_code == 400 and field in r.json()["error"], (path, r.text)
    big = {"pad": "x" * 250_000}
    r = httpx.post(server.url + HOOK, json=big, headers=headers())
    assert r.status_code == 413
    chunked = httpx.post(server.url + HOOK, content=iter([b'{"pad": "', b"x" * 250_000, b'"}']), headers=headers())
    assert chunked.status_code == 413


def test_plain_api_metadata_feedback_and_cors(server, keys):
    from tests.conftest import rule_patients

    patients = rule_patients(3)
    r = call(server, keys, "POST", "/v1/recommend?top_k=3", patients)
    assert r.status_code == 200 and len(r.json()) == 3 and len(r.json()[0]["ranked"]) == 3
    single = call(server, keys, "POST", "/v1/recommend", patients[0]).json()
    assert single["patient_id"] == "r0" and len(single["recommended"]) == 6
    bad = call(server, keys, "POST", "/v1/recommend", {"visits": []}).json()
    assert "no visits" in bad["error"]
    meta = call(server, keys, "GET", "/metadata").json()
    assert [x["code"] for x in meta["labels"]] == ["C07A", "C10A", "A10B", "N02B", "B01A", "J01C"]
    assert {"metrics", "dataset_sha256", "versions", "limitations"} <= meta.keys()
    assert httpx.get(server.url + "/model-card").text.startswith("# Model card")
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-01-01"}]}
    r = call(server, keys, "POST", HOOK + "/feedback", feedback)
    assert r.status_code == 200 and r.json() == {"accepted": 1}
    assert call(server, keys, "POST", HOOK + "/feedback", {"feedback": 3}).status_code == 400
    assert httpx.get(server.url + "/openapi.json").json()["paths"].keys() >= {HOOK, "/v1/recommend"}
    allowed = httpx.options(
        server.url + HOOK, headers={"Origin": "https://ehr.test", "Access-Control-Request-Method": "POST"}
    )
    assert allowed.headers.get("access-control-allow-origin") == "https://ehr.test"
    other = httpx.options(
        server.url + HOOK, headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_log_holds_no_patient_identifier_code_or_name(server, keys):
    """Last on purpose: greps the log of every call above (a full run of the module's server)."""
    call(server, keys, "GET", "/cds-services")
    lines = server.log.read_text().splitlines()
    assert any('"event": "access"' in line and '"ms":' in line for line in lines)
    assert any('"event": "unscorable"' in line for line in lines)
    secrets: set[str] = set()
    for bundle in bundles():
        for entry in bundle["entry"]:
            r = entry["resource"]
            secrets.add(r["id"])
            for name in r.get("name") or ():
                secrets.update([name.get("family", ""), *name.get("given", [])])
            for ident in r.get("identifier") or ():
                secrets.add(str(ident.get("value", "")))
            for coding in (r.get("code") or {}).get("coding") or ():
                secrets.add(coding.get("code", ""))
                secrets.add(coding.get("display", ""))
    secrets = {s for s in secrets if len(s) >= 5}
    assert len(secrets) > 50
    text = "\n".join(lines)
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, leaked[:5]
