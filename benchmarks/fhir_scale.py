"""Scale benchmark of `leader data fhir`: the Synthea Bulk Data export replicated to ~1M resources.

    .venv/bin/python -m benchmarks.fhir_scale [--copies 25] [--source ../shared/data/fhir-r4-synthea] [--keep DIR]

Copy k of the export gets new ids: the first 8 hex digits of every UUID (resource ids and the
references to them) become k, so copies are distinct patients with their own encounters. Each type
is written as several gzip NDJSON files (``Encounter.000.ndjson.gz``, ...; 5 copies per file), the
way a Bulk Data export splits large types. Then `leader data fhir` runs in a subprocess; the
benchmark reads its wall time, CPU time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``).
The importer is one process: on a busy machine wall time measures the neighbours, so resources per
CPU second is reported too, with the load average. Prints a markdown row and writes
``benchmarks/results/fhir_scale.json``. Target: >= 50,000 resources/s and < 2 GB on 2 cores.
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


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_only(root: Path) -> float:
    """Resources per CPU second of reading and parsing alone (`leader.cohort.iter_jsonl`, leader.safejson)."""
    from leader.cohort import iter_jsonl

    start, lines = time.process_time(), 0
    for path in sorted(root.glob("*.ndjson.gz")):
        for _ in iter_jsonl(path):
            lines += 1
    return lines / (time.process_time() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=25, help="copies of the export (25 x 40,415 = 1.01M resources)")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leader-fhir-scale-") as tmp:
        root = args.keep or Path(tmp) / "export"
        start = time.perf_counter()
        resources = generate(args.source, root, args.copies)
        print(f"generated {resources:,} resources in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        leader = Path(sys.executable).with_name("leader")
        out = Path(tmp) / "prepared"
        command = [str(leader), "data", "fhir", "--input", str(root), "--out", str(out)]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=sys.stderr)  # stdout is the markdown table only
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_gb, cpu_seconds = usage.ru_maxrss / 1024**2, usage.ru_utime + usage.ru_stime
        manifest = json.loads((out / "manifest.json").read_text())
        parse_rate = parse_only(root)
        input_mb = sum(p.stat().st_size for p in root.iterdir()) / 1024**2
    result = {
        "what": "leader data fhir on the Synthea Bulk Data export replicated with new ids",
        "copies": args.copies,
        "resources": resources,
        "input_ndjson_gz_mb": round(input_mb, 1),
        "seconds": round(seconds, 1),
        "resources_per_second": round(resources / seconds),
        "cpu_seconds": round(cpu_seconds, 1),
        "resources_per_cpu_second": round(resources / cpu_seconds),
        "parse_only_resources_per_cpu_second": round(parse_rate),
        "load_average_before": round(load, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "patients_out": manifest["counts"]["patients"],
        "visits_out": manifest["counts"]["visits"],
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "target": ">= 50,000 resources/s and < 2 GB on 2 cores",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| input | resources | wall / CPU time | resources/s (wall / CPU) | peak RSS | target |")
    print("|---|---|---|---|---|---|")
    print(
        f"| Synthea x {args.copies} ({input_mb:.0f} MB ndjson.gz) | {resources:,} | {seconds:.1f} s / {cpu_seconds:.1f} s "
        f"| {resources / seconds:,.0f} / {resources / cpu_seconds:,.0f} | {peak_gb:.2f} GB | >= 50,000/s, < 2 GB |"
    )
    print(
        f"\nCPU: {result['cpu']}, {result['cpus']} cores. Reading and parsing the NDJSON alone (leader.safejson): "
        f"{parse_rate:,.0f} resources per CPU second, {resources / parse_rate:.1f} of the {cpu_seconds:.1f} CPU seconds."
    )
    return result


if __name__ == "__main__":
    main()
