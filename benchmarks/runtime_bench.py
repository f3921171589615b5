"""Runtime benchmark on the synthetic cohort: data -> student -> ONNX (+ int8) -> `leader bench`.

    python -m benchmarks.runtime_bench --work runs/bench                        # no teacher timing
    python -m benchmarks.runtime_bench --work runs/bench --teacher runs/teacher  # with it

Steps whose output already exists under --work are reused, so a second run only re-times. The
student is trained without a teacher (`--no-teacher`): its size, and so its speed, is the same as
a distilled one's. Prints `leader bench`'s table and leaves bench.json in --work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leader.cli import main


def _step(argv: list[str]) -> None:
    print("$ leader " + " ".join(argv), file=sys.stderr)
    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def run(work: Path, teacher: Path | None, patients: int) -> None:
    data, student, model = work / "synth", work / "student", work / "model.onnx"
    if not data.exists():
        _step(["data", "synth", "--patients", str(patients), "--out", str(data)])
    if not student.exists():
        _step(["distill", "--data", str(data), "--out", str(student), "--no-teacher", "--no-progress"])
    if not model.exists():
        _step(["export", "--onnx", "--student", str(student), "--out", str(model), "--int8", "--force"])
    argv = ["bench", "--model", str(model), "--student", str(student), "--out", str(work / "bench.json")]
    _step(argv + (["--teacher", str(teacher)] if teacher else []))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), help="folder for the chain's outputs")
    parser.add_argument("--teacher", type=Path, default=None, help="teacher run folder to time (optional)")
    parser.add_argument("--patients", type=int, default=2000, help="synthetic patients")
    args = parser.parse_args()
    run(args.work, args.teacher, args.patients)
