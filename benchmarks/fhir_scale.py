"""Scale benchmark of `leader data fhir`: the Synthea Bulk Data export replicated to ~1M resources.

    .venv/bin/python -m benchmarks.fhir_scale [--copies 25] [--workers 1 --workers 2] [--source ../shared/data/fhir-r4-synthea] [--keep DIR]

Copy k of the export gets new ids: the first 8 hex digits of every UUID (resource ids and the
references to them) become k, so copies are distinct patients with their own encounters. Each type
is written as several gzip NDJSON files (``Encounter.000.ndjson.gz``, ...; 5 copies per file), the
way a Bulk Data export splits large types. Then `leader data fhir` runs in a subprocess, once per
``--workers`` value (default: 1, then the importer's own default), and the benchmark reads its wall
time, its CPU time (``RUSAGE_CHILDREN``: the importer and its worker processes) and its peak memory:
the largest sum of the resident sets of the importer and its workers, sampled every 50 ms from
/proc. On a busy machine wall time measures the neighbours, so resources per CPU second is reported
too, with the load average. The runs must write the same cohort (same sha256). Prints a markdown
table and writes ``benchmarks/results/fhir_scale.json``. Target: >= 50,000 resources/s and < 2 GB
on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results" / "fhir_scale.json"
SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fhir-r4-synthea"
UUID = re.compile(r"\b[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")
PER_FILE = 5


def generate(source: Path, root: Path, copies: int) -> int:
    """Write `copies` re-identified copies of the export at `source` under `root`; return the resource count."""
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in sorted(source.glob("*.ndjson.gz")):
        rtype = path.name.split(".", 1)[0]
        lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
        for first in range(0, copies, PER_FILE):
            name = root / f"{rtype}.{first // PER_FILE:03d}.ndjson.gz"
            with gzip.open(name, "wt", encoding="utf-8", compresslevel=1) as handle:
                for k in range(first, min(first + PER_FILE, copies)):
                    prefix = f"{k:08x}"
                    handle.write("\n".join(UUID.sub(lambda m, p=prefix: p + m.group(1), line) for line in lines))
                    handle.write("\n")
                    total += len(lines)
    return total


def parse_only(root: Path) -> float:
    """Resources per CPU second of reading and parsing alone (`leader.cohort.iter_jsonl`, leader.safejson)."""
    from leader.cohort import iter_jsonl

    start, lines = time.process_time(), 0
    for path in sorted(root.glob("*.ndjson.gz")):
        for _ in iter_jsonl(path):
            lines += 1
    return lines / (time.process_time() - start)


def _tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (Linux /proc; 0 once it has exited)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total


def run_import(root: Path, out: Path, workers: int | None) -> dict:
    """Run `leader data fhir` on `root` once; wall and CPU seconds, peak memory of its process tree."""
    command = [str(Path(sys.executable).with_name("leader")), "data", "fhir", "--input", str(root), "--out", str(out)]
    command += [] if workers is None else ["--workers", str(workers)]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=sys.stderr)  # stdout is the markdown table only
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "workers": workers if workers is not None else "default",
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_gb": round(peak / 1024**3, 2),
        "load_average_before": round(load, 1),
        "cohort_sha256": manifest["cohort_sha256"],
        "patients_out": manifest["counts"]["patients"],
        "visits_out": manifest["counts"]["visits"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=25, help="copies of the export (25 x 40,415 = 1.01M resources)")
    parser.add_argument(
        "--workers", type=int, action="append", help="a --workers value to run (repeatable); default: 1 and the default"
    )
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args(argv)
    settings = args.workers or [1, None]
    with tempfile.TemporaryDirectory(prefix="leader-fhir-scale-") as tmp:
        root = args.keep or Path(tmp) / "export"
        start = time.perf_counter()
        resources = generate(args.source, root, args.copies)
        print(f"generated {resources:,} resources in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        runs = [run_import(root, Path(tmp) / f"prepared-{i}", workers) for i, workers in enumerate(settings)]
        parse_rate = parse_only(root)
        input_mb = sum(p.stat().st_size for p in root.iterdir()) / 1024**2
    if len({r["cohort_sha256"] for r in runs}) != 1:
        raise SystemExit(f"the runs wrote different cohorts: {[(r['workers'], r['cohort_sha256']) for r in runs]}")
    for r in runs:
        r["resources_per_second"] = round(resources / r["seconds"])
        r["resources_per_cpu_second"] = round(resources / r["cpu_seconds"])
    from leader.data.fhir_read import default_workers

    result = {
        "what": "leader data fhir on the Synthea Bulk Data export replicated with new ids",
        "copies": args.copies,
        "resources": resources,
        "input_ndjson_gz_mb": round(input_mb, 1),
        "default_workers": default_workers(),
        "runs": runs,
        "parse_only_resources_per_cpu_second": round(parse_rate),
        "cpu": describe(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "target": ">= 50,000 resources/s and < 2 GB on 2 cores",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| input | resources | --workers | wall / CPU time | resources/s (wall / CPU) | peak memory | target |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        workers = r["workers"] if r["workers"] != "default" else f"default ({default_workers()})"
        print(
            f"| Synthea x {args.copies} ({input_mb:.0f} MB ndjson.gz) | {resources:,} | {workers} "
            f"| {r['seconds']:.1f} s / {r['cpu_seconds']:.1f} s "
            f"| {r['resources_per_second']:,} / {r['resources_per_cpu_second']:,} | {r['peak_rss_gb']:.2f} GB "
            "| >= 50,000/s, < 2 GB |"
        )
    print(
        f"\nCPU: {result['cpu']}; load average before each run: "
        + ", ".join(f"{r['load_average_before']}" for r in runs)
        + ". Peak memory: the importer and its workers together. Every run wrote the same cohort (sha256 "
        f"{runs[0]['cohort_sha256'][:12]}...). Reading and parsing the NDJSON alone (leader.safejson): "
        f"{parse_rate:,.0f} resources per CPU second."
    )
    if max(r["load_average_before"] for r in runs) > 0.5 * (os.cpu_count() or 1):
        print(
            "\nThe machine was busy: other processes shared the cores (with Linux autogroup scheduling, each "
            "session gets one share however many workers it runs), so the wall times measure the neighbours; "
            "compare the CPU seconds."
        )
    return result


if __name__ == "__main__":
    main()
