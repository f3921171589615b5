"""Load test of `leader serve`: CDS Hooks patient-view calls with a 3-visit prefetch, JWT auth on.

    python -m benchmarks.serve_bench --model model.onnx [--workers 2] [--duration 60] [--out serve.json]

Starts `leader serve` on 127.0.0.1 (a fresh RS384 key pair and JWKS), then, from this process (an
asyncio httpx loop; it shares the machine's cores with the server, which the figures include):
(a) capacity: `--clients` concurrent clients posting back to back for `--duration` s: requests/s,
5xx, dropped connections; (b) latency: an open loop of `--rate` requests/s for `--duration` s:
p50/p99 from the scheduled send time (queueing included), and the server-side time per call from
the Server-Timing header. Then the RSS of each worker. JWTs (unique jti) are signed before each
phase, in parallel processes, so signing does not compete with the server during the timed part.
The prefetch is the 3-visit Synthea Bundle of shared/data/fhir-r4-synthea/bundles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import jwt
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://ehr.bench"
HOOK = "/cds-services/leader-medication-recommendation"
BUNDLE = "Adolph_Smith_0c6b1f3d-edb2-422b-a0af-a262fb90ed07.json"
TYPES = {"Encounter": "encounters", "Condition": "conditions", "Procedure": "procedures",
         "MedicationRequest": "medicationRequests", "AllergyIntolerance": "allergies"}  # fmt: skip


def _sign(args: tuple[bytes, str, int]) -> list[str]:
    pem, audience, n = args
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 280}
    return [jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, "RS384", headers={"kid": "k1"}) for _ in range(n)]


def tokens(pem: bytes, audience: str, n: int) -> list[str]:
    with ProcessPoolExecutor(2) as pool:
        return [t for part in pool.map(_sign, [(pem, audience, n // 2 + 1)] * 2) for t in part]


def hook_body(shared: Path) -> dict:
    path = shared / "fhir-r4-synthea" / "bundles" / BUNDLE
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmark needs shared/data (set LEADER_SHARED_DATA or --shared)")
    entries = json.loads(path.read_text())["entry"]
    patient = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    prefetch = {"patient": patient}
    for rtype, key in TYPES.items():
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset",
                         "entry": [e for e in entries if e["resource"]["resourceType"] == rtype]}  # fmt: skip
    context = {"userId": "Practitioner/1", "patientId": patient["id"]}
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=1000)[int(q * 10) - 1], 3) if len(values) > 1 else float("nan")


async def closed_loop(url: str, body: bytes, toks: list[str], clients: int, duration: float) -> dict:
    stats = {"ok": 0, "4xx": 0, "5xx": 0, "dropped": 0, "server_ms": []}
    it = iter(toks)
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker():
            while time.perf_counter() < deadline:
                headers = {"Authorization": f"Bearer {next(it)}", "Content-Type": "application/json"}
                try:
                    r = await client.post(url + HOOK, content=body, headers=headers)
                except httpx.TransportError:
                    stats["dropped"] += 1
                    continue
                kind = "ok" if r.status_code == 200 else "5xx" if r.status_code >= 500 else "4xx"
                stats[kind] += 1
                stats["server_ms"].append(float(r.headers["server-timing"].split("dur=")[1]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    total = stats["ok"] + stats["4xx"] + stats["5xx"]
    server = stats.pop("server_ms")
    return {**stats, "requests": total, "seconds": round(elapsed, 1), "requests_per_s": round(total / elapsed, 1),
            "server_ms_p50": pct(server, 50)}  # fmt: skip


async def open_loop(url: str, body: bytes, toks: list[str], rate: float, duration: float, bound: int = 256) -> dict:
    latencies, server, stats = [], [], {"ok": 0, "4xx": 0, "5xx": 0, "dropped": 0, "shed": 0}
    slots = asyncio.Semaphore(bound)  # bounded: beyond `bound` in flight, a request is shed (counted)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def one(token: str, scheduled: float):
            try:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                r = await client.post(url + HOOK, content=body, headers=headers)
                latencies.append((time.perf_counter() - scheduled) * 1000)
                stats["ok" if r.status_code == 200 else "5xx" if r.status_code >= 500 else "4xx"] += 1
                server.append(float(r.headers["server-timing"].split("dur=")[1]))
            except httpx.TransportError:
                stats["dropped"] += 1
            finally:
                slots.release()

        start, tasks = time.perf_counter(), []
        for i in range(int(rate * duration)):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            if slots.locked():
                stats["shed"] += 1
                continue
            await slots.acquire()
            tasks.append(asyncio.create_task(one(toks[i], scheduled)))
        await asyncio.gather(*tasks)
    return {**stats, "rate": rate, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
            "max_ms": round(max(latencies), 3), "server_ms_p50": pct(server, 50), "server_ms_p99": pct(server, 99)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-rps", type=int, default=900, help="tokens signed for phase (a): duration x this")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("LEADER_SHARED_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (work / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS384"}]}))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url, audience = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/cds-services"
    cmd = [sys.executable, "-m", "leader", "serve", "--model", str(args.model), "--port", str(port),
           "--workers", str(args.workers), "--jwks", str(work / "jwks.json"), "--issuer", ISSUER, "--audience", audience]  # fmt: skip
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(2)  # every worker up
        body = json.dumps(hook_body(args.shared)).encode()
        result = {"cpu": _cpu(), "cores": os.cpu_count(), "workers": args.workers, "body_bytes": len(body),
                  "generator": "asyncio httpx in one process on the same cores as the server"}  # fmt: skip
        toks = tokens(pem, audience, int(args.duration * args.max_rps))
        result["loadavg_before_a"] = os.getloadavg()
        result["capacity"] = asyncio.run(closed_loop(url, body, toks, args.clients, args.duration))
        toks = tokens(pem, audience, int(args.duration * args.rate) + 1)
        result["loadavg_before_b"] = os.getloadavg()
        result["latency"] = asyncio.run(open_loop(url, body, toks, args.rate, args.duration))
        result["loadavg_after"] = os.getloadavg()
        procs = psutil.Process(server.pid).children(recursive=True) or [psutil.Process(server.pid)]
        result["worker_rss_mb"] = [round(p.memory_info().rss / 2**20, 1) for p in procs]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
