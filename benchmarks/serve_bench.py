"""Load test of `leader serve`: CDS Hooks patient-view calls with a 3-visit prefetch, JWT auth on.

    python -m benchmarks.serve_bench --model model.onnx [--workers 2] [--duration 60] [--out serve.json]

Starts `leader serve` on 127.0.0.1 (a fresh RS384 key pair and JWKS), then, from this process (an
asyncio loop of keep-alive HTTP/1.1 connections, `Connection`; it shares the machine's cores with
the server, which the figures include): (a) capacity: `--clients` concurrent clients posting back
to back for `--duration` s: requests/s, 5xx, dropped connections; (b) latency: an open loop of
`--rate` requests/s for `--duration` s: p50/p99 from the scheduled send time (queueing included),
and the server-side time per call from the Server-Timing header. Each phase also reports the CPU
time per request of the workers and of the generator (user + system): unlike requests/s, it holds
on a busy machine. Then the RSS of each worker. JWTs (unique jti) are signed before each phase,
in parallel processes, so signing does not compete with the server during the timed part.
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

from benchmarks.machine import describe

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


class Dropped(Exception):
    """The connection failed before a whole response came back."""


class Connection:
    """One keep-alive HTTP/1.1 connection posting prebuilt requests. The generator shares the cores
    with the server, so it stays lean: 0.1-0.5 ms of CPU per request where httpx, which the first
    version of this benchmark used, took 2.2-4.9 ms (both on a busy 2-core machine): its capacity
    figure measured the client as much as the service."""

    IDLE = 4.0
    """Seconds after which an unused connection is opened anew (uvicorn closes it after 5)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, request: bytes) -> tuple[int, float]:
        """(HTTP status, the server's own time in ms from its Server-Timing header), or Dropped."""
        try:
            if self.writer is None or time.perf_counter() - self.used > self.IDLE:
                self.close()
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:-2])
            fields = {name.strip().lower(): value.strip() for name, value in fields.items()}
            await self.reader.readexactly(int(fields[b"content-length"]))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            raise Dropped from None
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        self.used = time.perf_counter()
        return int(head[9:12]), float(fields[b"server-timing"].split(b"dur=")[1])


def hook_request(port: int, token: str, body: bytes) -> bytes:
    return (
        f"POST {HOOK} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def kind(status: int) -> str:
    return "ok" if status == 200 else "5xx" if status >= 500 else "4xx"


async def closed_loop(port: int, body: bytes, toks: list[str], clients: int, duration: float) -> dict:
    stats, server = {"ok": 0, "4xx": 0, "5xx": 0, "dropped": 0}, []
    it = iter(toks)
    deadline = time.perf_counter() + duration

    async def client():
        conn = Connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            try:
                status, ms = await conn.post(hook_request(port, next(it), body))
            except Dropped:
                stats["dropped"] += 1
                continue
            stats[kind(status)] += 1
            server.append(ms)
        conn.close()

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), duration + 30)
    elapsed = time.perf_counter() - start
    total = stats["ok"] + stats["4xx"] + stats["5xx"]
    return {**stats, "requests": total, "seconds": round(elapsed, 1), "requests_per_s": round(total / elapsed, 1),
            "server_ms_p50": pct(server, 50)}  # fmt: skip


async def open_loop(port: int, body: bytes, toks: list[str], rate: float, duration: float, bound: int = 256) -> dict:
    latencies, server, stats = [], [], {"ok": 0, "4xx": 0, "5xx": 0, "dropped": 0, "shed": 0}
    slots = asyncio.Semaphore(bound)  # bounded: beyond `bound` in flight, a request is shed (counted)
    idle: list[Connection] = []  # a connection per request in flight, reused once it is free

    async def one(token: str, scheduled: float):
        conn = idle.pop() if idle else Connection("127.0.0.1", port)
        try:
            status, ms = await conn.post(hook_request(port, token, body))
            latencies.append((time.perf_counter() - scheduled) * 1000)
            stats[kind(status)] += 1
            server.append(ms)
        except Dropped:
            stats["dropped"] += 1
        finally:
            idle.append(conn)
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
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    for conn in idle:
        conn.close()
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
        result = {"cpu": describe(), "cores": os.cpu_count(), "workers": args.workers, "body_bytes": len(body),
                  "generator": "asyncio keep-alive HTTP/1.1 client in one process on the same cores as the server"}  # fmt: skip
        procs = psutil.Process(server.pid).children(recursive=True) or [psutil.Process(server.pid)]
        toks = tokens(pem, audience, int(args.duration * args.max_rps))
        result["loadavg_before_a"] = os.getloadavg()
        result["capacity"] = measured(procs, lambda: closed_loop(port, body, toks, args.clients, args.duration))
        toks = tokens(pem, audience, int(args.duration * args.rate) + 1)
        result["loadavg_before_b"] = os.getloadavg()
        result["latency"] = measured(procs, lambda: open_loop(port, body, toks, args.rate, args.duration))
        result["loadavg_after"] = os.getloadavg()
        result["worker_rss_mb"] = [round(p.memory_info().rss / 2**20, 1) for p in procs]
        result["wakeup_cost_json_parse"] = wakeup_cost(body)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def wakeup_cost(body: bytes, calls: int = 300, gap: float = 0.01) -> dict:
    """The machine, not the service: CPU ms of one parse of the hook body back to back, and after
    `gap` s asleep each time (as a worker between calls at 100 req/s). Where the second is much
    larger, a core that idles loses its caches or clock (a VM's halted vCPU), and every call of
    phase (b) pays that on top of its work."""

    def median_ms(sleep: float) -> float:
        times = []
        for _ in range(calls):
            if sleep:
                time.sleep(sleep)
            start = time.thread_time()
            json.loads(body)
            times.append(time.thread_time() - start)
        return round(statistics.median(times) * 1000, 3)

    median_ms(0)  # warm-up
    return {"back_to_back_ms": median_ms(0), f"after_{int(gap * 1000)}ms_asleep_ms": median_ms(gap)}


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def measured(procs: list[psutil.Process], phase) -> dict:
    """Run one phase and add the CPU time it cost per answered request: the workers' (user + system,
    all workers summed) and this generator's. Unlike requests/s, these hold on a busy machine."""
    server, generator = _cpu_seconds(procs), time.process_time()
    stats = asyncio.run(phase())
    server, generator = _cpu_seconds(procs) - server, time.process_time() - generator
    answered = max(1, stats["ok"] + stats["4xx"] + stats["5xx"])
    return {**stats, "server_cpu_ms_per_request": round(server / answered * 1000, 3),
            "generator_cpu_ms_per_request": round(generator / answered * 1000, 3)}  # fmt: skip


if __name__ == "__main__":
    main()
