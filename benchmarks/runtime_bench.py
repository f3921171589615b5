"""Runtime benchmark on the synthetic cohort: data -> student -> ONNX (+ int8) -> `leader bench`.

    python -m benchmarks.runtime_bench --work runs/bench                        # no teacher timing
    python -m benchmarks.runtime_bench --work runs/bench --teacher runs/teacher  # with it

Steps whose output already exists under --work are reused, so a second run only re-times. The
student is the kind the demo ships, started from the logistic baseline (`--prior`, whose table
the exported file carries), but trained without a teacher (`--no-teacher`): its size, and so its
speed, is the same as a distilled one's. `leader bench` runs `--repeats` times (5; a 2-core VM's
speed drifts by tens of percent from minute to minute): the table printed holds the median of
each figure over the runs, judged against the targets, and bench.json in --work holds every run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import sys
from pathlib import Path

from benchmarks.machine import describe
from leader.cli import main


def _step(argv: list[str]) -> None:
    print("$ leader " + " ".join(argv), file=sys.stderr)
    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def median_report(reports: list[dict]) -> dict:
    """One report whose every number under engines, end_to_end and runtime_process is the median
    over `reports` (the same benchmark run several times), with the targets judged on them."""
    from leader.export.bench import _judge

    def merge(values: list):
        if isinstance(values[0], dict):
            return {k: merge([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return statistics.median(values)
        return values[0]

    out = copy.deepcopy(reports[0])
    for key in ("engines", "end_to_end", "runtime_process"):
        out[key] = merge([r[key] for r in reports])
    out["machine"]["load_average_after"] = reports[-1]["machine"]["load_average_after"]
    out["runs"] = len(reports)
    out["targets"] = _judge(out)
    return out


def run(work: Path, teacher: Path | None, patients: int, repeats: int = 5) -> None:
    data, logistic = work / "synth", work / "logistic"
    student, model = work / "student-prior", work / "model-prior.onnx"  # before 2026-12-03: student, model.onnx
    if not data.exists():
        _step(["data", "synth", "--patients", str(patients), "--out", str(data)])
    if not logistic.exists():
        _step(
            ["baseline", "--data", str(data), "--method", "logistic", "--history", "previous", "--out", str(logistic)]
        )
    if not student.exists():
        _step(
            ["distill", "--data", str(data), "--out", str(student), "--prior", str(logistic)]
            + ["--no-teacher", "--no-progress"]
        )
    if not model.exists():
        _step(["export", "--onnx", "--student", str(student), "--out", str(model), "--int8", "--force"])
    from leader.export.bench import format_report

    reports = []
    for k in range(repeats):
        out = work / f"bench.{k}.json"
        argv = ["bench", "--model", str(model), "--student", str(student), "--out", str(out)]
        # the teacher is timed once (seconds per visit, far from the noise)
        with contextlib.redirect_stdout(io.StringIO()):  # each run's own table: only the median is printed
            _step(argv + (["--teacher", str(teacher)] if teacher and k == 0 else []))
        reports.append(json.loads(out.read_text()))
        out.unlink()
    report = median_report(reports)
    if teacher:
        report["teacher"] = reports[0]["teacher"]
    (work / "bench.json").write_text(json.dumps({"median": report, "runs": reports}, indent=2) + "\n")
    print(f"CPU: {describe()}. Median of {repeats} runs of `leader bench`:\n\n```")
    print(format_report(report), end="")
    print("```")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), help="folder for the chain's outputs")
    parser.add_argument("--teacher", type=Path, default=None, help="teacher run folder to time (optional)")
    parser.add_argument("--patients", type=int, default=2000, help="synthetic patients")
    parser.add_argument("--repeats", type=int, default=5, help="runs of `leader bench`; each figure is their median")
    args = parser.parse_args()
    run(args.work, args.teacher, args.patients, args.repeats)
