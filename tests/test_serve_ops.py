"""`leader serve` operations: model reload without dropped requests, graceful SIGTERM, the
127.0.0.1-only rule of --auth none, and a server process that never imports torch. Fixtures and
helpers are those of tests/test_serve.py (its own uvicorn subprocess here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx

from tests import test_serve as base
from tests.test_serve import HOOK, FhirStub, Server, bundles, call, hook_body, token

keys, models, server = base.keys, base.models, base.server  # the fixtures, for this module's own server


def test_reload_swaps_the_model_without_dropping_requests(server, keys, models):
    before = call(server, keys, "GET", "/metadata").json()["sha256"]
    body = hook_body(bundles()[0])
    statuses: list[int] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client() as client:
            while not stop.is_set():
                r = client.post(
                    server.url + HOOK, json=body, headers={"Authorization": f"Bearer {token(server, 'rsa1', keys)}"}
                )
                statuses.append(r.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    tmp = server.live.with_name("incoming.onnx")
    shutil.copy(models[0], tmp)
    os.replace(tmp, server.live)  # the operator's atomic rename
    r = call(server, keys, "POST", "/admin/reload")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200 and r.json()["sha256"] != before
    assert statuses and set(statuses) == {200}, set(statuses)
    server.live.write_bytes(b"not a model")
    r = call(server, keys, "POST", "/admin/reload")
    assert r.status_code == 409 and call(server, keys, "GET", "/metadata").json()["sha256"] != before
    shutil.copy(models[1], tmp)
    os.replace(tmp, server.live)
    os.kill(server.proc.pid, signal.SIGHUP)  # the signal path: one worker reloads itself
    for _ in range(50):
        if call(server, keys, "GET", "/metadata").json()["sha256"] == before:
            break
        time.sleep(0.1)
    assert call(server, keys, "GET", "/metadata").json()["sha256"] == before


def test_sigterm_lets_the_request_in_flight_finish(models, tmp_path):
    bundle = bundles()[0]
    stub = FhirStub(bundle, "t", delay=0.4)  # six fetches in parallel: ~0.4 s in flight
    srv = Server(tmp_path, models[1], "--auth", "none")
    try:
        body = hook_body(bundle)
        del body["prefetch"]
        body.update(fhirServer=stub.url, fhirAuthorization={"access_token": "t"})
        result = {}
        worker = threading.Thread(target=lambda: result.update(r=httpx.post(srv.url + HOOK, json=body, timeout=30)))
        worker.start()
        while not stub.seen:
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)
        worker.join()
        assert result["r"].status_code == 200 and result["r"].json()["cards"]
        assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        srv.stop()
        stub.close()


def test_auth_none_only_on_localhost_and_bad_options_are_one_line(models, capsys):
    from leader.cli import main

    assert main(["serve", "--model", str(models[0]), "--auth", "none", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--auth none is refused on --host 0.0.0.0" in err[0]
    assert main(["serve", "--model", str(models[0])]) == 2
    assert "--jwks" in capsys.readouterr().err


def test_server_never_imports_torch(models):
    code = (
        "import sys, json\n"
        "from fastapi.testclient import TestClient\n"
        "from leader.export.serve.app import create_app\n"
        "from leader.export.serve.config import ServeConfig\n"
        "import leader.cli.serve\n"
        f"app = create_app(ServeConfig(model={str(models[1])!r}, auth='none'))\n"
        "with TestClient(app) as client:\n"
        "    body = json.loads(sys.argv[1])\n"
        "    r = client.post('/cds-services/leader-medication-recommendation', json=body)\n"
        "    print(json.dumps({'status': r.status_code, 'cards': len(r.json()['cards']), 'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(hook_body(bundles()[0]))], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"status": 200, "cards": out["cards"], "torch": False} and out["cards"] >= 1
