"""`make bench`: run every benchmark and write BENCHMARKS.md from what they measured.

    .venv/bin/python -m benchmarks.run                      # all three, ~15 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --only teacher       # one of: data, teacher, runtime

Each benchmark runs in its own process (so one's memory does not count against another), prints
its markdown table and leaves its JSON under benchmarks/results/. BENCHMARKS.md is rewritten from
those tables, with the command, the date and the machine's load, so the document can only say
what was measured. The runtime benchmark times the teacher of `runs/demo/teacher` when a demo was
run (`make demo`), else the chain's own teacher is left out and said to be.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "data": (
        "Data preparation at MIMIC-IV scale",
        ["benchmarks.data_scale"],
        "`leader data mimic4` on a synthetic input of MIMIC-IV's size: wall time and peak memory.",
    ),
    "teacher": (
        "Teacher training and features (SmolLM2-135M, CPU)",
        ["benchmarks.teacher_bench"],
        "LoRA training tokens/s by precision, feature extraction tokens/s and the padding share.",
    ),
    "runtime": (
        "Exported student: latency, throughput, size, memory",
        ["benchmarks.runtime_bench", "--work", "runs/bench"],
        "Synthetic cohort (2,000 patients) -> student -> ONNX fp32 + int8 -> `leader bench`.",
    ),
    "fhir": (
        "FHIR R4 Bulk Data import (Synthea x 25, ~1M resources)",
        ["benchmarks.fhir_scale"],
        "`leader data fhir` on the Synthea export replicated with new ids: resources/s (wall and CPU), peak memory.",
    ),
    "omop": (
        "OMOP CDM import (Eunomia GiBleed, DuckDB and PostgreSQL)",
        ["benchmarks.omop_bench"],
        "`leader data omop` on OHDSI's Eunomia test CDM from its DuckDB file and from a local PostgreSQL 15.",
    ),
}


def _run(module_args: list[str]) -> str:
    command = [sys.executable, "-m", *module_args]
    print("$ python -m " + " ".join(module_args), file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark {module_args[0]} failed with exit code {result.returncode}")
    sys.stdout.write(result.stdout)
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these (repeatable)")
    args = parser.parse_args(argv)
    chosen = args.only or list(SECTIONS)
    teacher = ROOT / "runs" / "demo" / "teacher"
    if "runtime" in chosen and (teacher / "run.json").exists():
        SECTIONS["runtime"][1].extend(["--teacher", str(teacher)])
    outputs = {}
    for key in chosen:
        load_before = os.getloadavg()[0]
        outputs[key] = (_run(SECTIONS[key][1]), load_before, os.getloadavg()[0])
    document = ROOT / "BENCHMARKS.md"
    old = document.read_text() if document.exists() else ""
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`python -m benchmarks.run`) from what it measured; JSON in `benchmarks/results/`.\n",
        f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, no GPU.\n",
    ]
    for key in SECTIONS:
        title, module_args, what = SECTIONS[key]
        if key in outputs:
            text, before, after = outputs[key]
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
            parts.append(
                f"## {title}\n\n{what}\n\n```\npython -m {' '.join(module_args)}\n```\n\n"
                f"Measured {stamp}, load average {before:.1f} before / {after:.1f} after.\n\n{text}\n"
            )
        elif f"## {title}" in old:  # keep the last measurement of a section not re-run
            start = old.index(f"## {title}")
            end = old.find("\n## ", start + 1)
            parts.append(old[start : end if end != -1 else len(old)].strip() + "\n")
    titles = {f"## {title}" for title, _, _ in SECTIONS.values()}
    for start in [i for i in range(len(old)) if old.startswith("\n## ", i)]:  # sections written by other benchmarks
        end = old.find("\n## ", start + 1)
        section = old[start + 1 : end if end != -1 else len(old)].strip()
        if section.splitlines()[0] not in titles:
            parts.append(section + "\n")
    document.write_text("\n".join(parts))
    print(f"wrote {document}", file=sys.stderr)


if __name__ == "__main__":
    main()
