"""`leader demo`: the whole pipeline on a synthetic cohort, one progress line per stage.

    leader demo --out runs/demo            # embedded SmolLM2 teacher, ~18 minutes on 2 CPU cores
    leader demo --quick --out runs/quick   # tiny random teacher, a few minutes (what CI runs)

Stages: synthetic cohort -> stats -> baselines (frequency; logistic with its defaults, the strongest
cheap baseline: note words, history and L2 chosen on validation, about 20 s) -> teacher (started
from that baseline's logits, `leader teach --prior`) and its feature cache -> students (no
teacher, feature KD, logit KD, each also started from the baseline's logits, `leader distill
--prior`; side by side when there are several cores) -> ONNX export of the student with the best
validation Jaccard (fp32 + int8, model card) -> bench -> report, then a closing table whose first
row is the strongest baseline (`leader.baseline.strongest_first`): the bar the teacher and the
students have to clear. Under the table each model is placed against that bar in bootstrap
standard deviations (`leader.baseline.standings`), so a row below it is not read as a result.
Every stage writes its own folder under --out and is skipped when that folder is already complete,
so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import sys
import time
from pathlib import Path

from leader.config import DemoConfig
from leader.errors import LeaderError
from leader.io import lock_out, read_json


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Stages:
    """Runs named stages, skipping those whose output exists, and prints one line for each."""

    def __init__(self, verbose: bool):
        self.start = time.perf_counter()
        self.count = 0
        self.verbose = verbose

    def __call__(self, name: str, done: Path | list[Path], fn) -> None:
        """Run `fn` as stage `name` unless `done` (a path, or every path of a list) exists."""
        self.count += 1
        marks = done if isinstance(done, list) else [done]
        if all(mark.exists() for mark in marks):
            _say(f"[{self.count:2d}] {name:<34} already done ({marks[-1]})")
            return
        t0 = time.perf_counter()
        _say(f"[{self.count:2d}] {name:<34} ...")
        if self.verbose:
            fn()
        else:
            # one line per stage: the stage's own chatter and bars are kept and shown only if it fails
            chatter = io.StringIO()
            try:
                with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
                    fn()
            except BaseException:
                _say(chatter.getvalue())
                raise
        _say(
            f"[{self.count:2d}] {name:<34} done in {time.perf_counter() - t0:6.1f} s   (total {time.perf_counter() - self.start:6.1f} s)"
        )


def _tiny_teacher_model(out: Path, data: Path) -> str:
    from leader.cohort import load_dataset
    from leader.teacher.tiny import make_tiny_backbone, tiny_texts

    folder = out / "tiny-llama"
    if not (folder / "config.json").exists():
        make_tiny_backbone(folder, tiny_texts([load_dataset(data)]), hidden=32, layers=1, seed=0)
    return str(folder)


def run(cfg: DemoConfig) -> dict:
    """Run the demo; returns the paths of what it made."""
    with lock_out(cfg.out):  # one demo per folder: its stages would replace each other's runs
        return _run(cfg)


def _run(cfg: DemoConfig) -> dict:
    from leader.baseline import run as run_baseline
    from leader.data.stats import dataset_stats, format_stats
    from leader.data.synth import synthesize

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    patients = cfg.patients or (300 if cfg.quick else 2000)
    if patients < 30:
        raise LeaderError("--patients must be at least 30 (the split needs validation and test patients)")
    paths = {
        "data": out / "synth",
        "frequency": out / "frequency",
        "logistic": out / "logistic",
        "teacher": out / "teacher",
        "student-no-teacher": out / "student-no-teacher",
        "student-kd": out / "student-kd",
        "student": out / "student",
        "onnx": out / "model.onnx",
        "bench": out / "model.bench.json",
        "report": out / "report.html",
    }
    stage = _Stages(cfg.progress)
    stage(
        f"synthetic cohort ({patients} patients)",
        paths["data"],
        lambda: synthesize(paths["data"], patients, seed=cfg.seed),
    )
    _say(format_stats(dataset_stats(paths["data"])))
    for label, baseline in baseline_configs(paths, cfg.seed).items():
        stage(f"baseline: {label}", baseline.out / "run.json", lambda b=baseline: run_baseline(b))
    _teacher_stages(cfg, stage, paths, out)
    _student_stages(cfg, stage, paths)
    _deploy_stages(cfg, stage, paths)
    _say("")
    _say(closing_table(paths, cfg.quick))
    _say(
        f"\nreport: {paths['report']}\nmodel:  {paths['onnx']} (+ {paths['onnx'].with_suffix('.int8.onnx').name}, model card {paths['onnx'].with_suffix('.md').name})"
    )
    return paths


def baseline_configs(paths: dict, seed: int) -> dict:
    """The demo's baselines by stage label: frequency, and logistic with its defaults, the strongest
    cheap baseline (note words; history and L2 chosen on validation)."""
    from leader.baseline import BaselineConfig

    return {
        "frequency": BaselineConfig(paths["data"], paths["frequency"], method="frequency", seed=seed, overwrite=True),
        "logistic (+notes, tuned)": BaselineConfig(paths["data"], paths["logistic"], seed=seed, overwrite=True),
    }


def _teacher_stages(cfg: DemoConfig, stage, paths: dict, out: Path) -> None:
    from leader.cohort import load_dataset
    from leader.teacher.config import TeachConfig
    from leader.teacher.features import ensure_features, features_dir
    from leader.teacher.train import run as run_teacher

    if cfg.quick:
        teach = TeachConfig(
            data=paths["data"],
            out=paths["teacher"],
            base_model=_tiny_teacher_model(out, paths["data"]),
            max_steps=30,
            eval_every=15,
            batch_size=8,
            max_tokens=128,
            compile=False,  # compiling a tiny model costs more than its 30 steps take
            prior=paths["logistic"],
            seed=cfg.seed,
            progress=cfg.progress,
        )
        label = "teacher: tiny random Llama"
    else:
        teach = TeachConfig(
            data=paths["data"],
            out=paths["teacher"],
            max_minutes=cfg.teacher_minutes,
            prior=paths["logistic"],  # it starts as the strongest baseline and keeps only what beats it
            seed=cfg.seed,
            progress=cfg.progress,
        )
        label = f"teacher: SmolLM2-135M ({cfg.teacher_minutes:g} min)"
    dataset = load_dataset(paths["data"])
    finished = paths["teacher"] / "run.json"
    cache = features_dir(paths["teacher"], dataset) / "index.json"

    def teacher_and_features() -> None:
        if not finished.exists():
            run_teacher(teach)  # ends by writing the feature cache (TeachConfig.cache_features)
        ensure_features(paths["teacher"], dataset, progress=cfg.progress)  # a no-op when it did

    stage(f"{label} + features", [finished, cache], teacher_and_features)


MODEL_RUNS = ("frequency", "logistic", "teacher", "student-no-teacher", "student-kd", "student")
"""The run folders of the closing table, in order (`strongest_first` moves the strongest baseline up)."""

STUDENTS = (
    ("student-no-teacher", dict(no_teacher=True, name="student (no teacher)")),
    ("student-kd", dict(beta=0.0, name="student (KD)")),
    # logit KD alone: the one KD that kept the teacher's ranking on the synthetic cohort and beat
    # the baseline on eICU (RESULTS.md); the demo exports whichever student validates best
    ("student", dict(alpha=0.0, gamma=1.0, name="student (logit KD)")),
)


def _student_stages(cfg: DemoConfig, stage, paths: dict) -> None:
    """The three students as one stage, each started from the strongest baseline's logits where it
    can (`leader.student.prior`). Each trains on one thread (DistillConfig.threads), so on a
    machine with several cores they train side by side in worker processes."""
    common = dict(data=str(paths["data"]), teacher=str(paths["teacher"]), seed=cfg.seed, progress=False, overwrite=True)
    # every student starts from the strongest baseline as the teacher did (`leader distill --prior`),
    # when that baseline reads only what the student reads (history "previous", the default's
    # choice on the synthetic cohort)
    logistic = read_json(paths["logistic"] / "run.json", "logistic baseline run")["config"]
    if logistic.get("history") == "previous":
        common["prior"] = str(paths["logistic"])
    if cfg.quick:
        common.update(epochs=15, patience=4)
    suffix = " + baseline prior" if "prior" in common else ""  # as `leader distill` names such a student
    todo = [
        dict(out=str(paths[key]), **common, **{**extra, "name": extra["name"] + suffix})
        for key, extra in STUDENTS
        if not (paths[key] / "run.json").exists()
    ]
    workers = max(1, min(len(todo), os.cpu_count() or 1))
    done = [paths[key] / "run.json" for key, _ in STUDENTS]
    stage(f"students: no teacher, KD, logit KD ({workers} at a time)", done, lambda: _train_students(todo, workers))


def _train_students(todo: list[dict], workers: int) -> None:
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a process that has run torch
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            chatter = list(pool.map(_distill_quietly, todo))
    else:
        chatter = [_distill_quietly(options) for options in todo]
    print("".join(chatter), file=sys.stderr, end="")


def _distill_quietly(options: dict) -> str:
    """One distillation (in a worker process); returns what it printed, for the demo's stage log."""
    from leader.student.config import DistillConfig
    from leader.student.distill import run as run_distill

    chatter = io.StringIO()
    with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
        run_distill(DistillConfig(**options))
    return chatter.getvalue()


def chosen_student(paths: dict) -> Path:
    """The student the demo exports: the one of `STUDENTS` with the best validation Jaccard (on
    the synthetic cohort no student is reliably best: RESULTS.md, "Three seeds of the students";
    the test split stays out of the choice)."""

    def val_jaccard(key: str) -> float:
        return read_json(paths[key] / "metrics.json", "student metrics")["val"]["overall"]["jaccard_samples"]["value"]

    return paths[max((key for key, _ in STUDENTS), key=val_jaccard)]


def _deploy_stages(cfg: DemoConfig, stage, paths: dict) -> None:
    from leader.export.bench import BenchConfig
    from leader.export.bench import run as run_bench
    from leader.export.onnx_export import ExportConfig
    from leader.export.onnx_export import run as run_export
    from leader.report import ReportConfig
    from leader.report import run as run_report
    from leader.runinfo import read_run

    student = chosen_student(paths)
    _say(f"exported student: {read_run(student).get('name', student.name)} (the best validation Jaccard of the three)")
    stage(
        "ONNX export (fp32 + int8, card)",
        paths["onnx"].with_suffix(".int8.onnx"),
        lambda: run_export(
            ExportConfig(student=student, out=paths["onnx"], int8=True, force=cfg.quick, overwrite=True)
        ),
    )
    stage(
        "bench (torch, ONNX fp32/int8, teacher)",
        paths["bench"],
        lambda: run_bench(
            BenchConfig(
                model=paths["onnx"],
                student=student,
                teacher=paths["teacher"],
                out=paths["bench"],
                latency_calls=300 if cfg.quick else 2000,
            )
        ),
    )
    runs = [paths[k] for k in MODEL_RUNS]
    stage(
        "report (HTML)",
        paths["report"],
        lambda: run_report(ReportConfig(runs=runs, out=paths["report"], bench=paths["bench"], title="leader demo")),
    )


def _rows(paths: dict) -> list[tuple[str, dict, dict]]:
    """The closing table's rows ``(name, run.json, metrics.json)``, the strongest baseline first."""
    from leader.baseline import strongest_first
    from leader.runinfo import read_run

    rows = []
    for key in MODEL_RUNS:
        record = read_run(paths[key])
        rows.append((record.get("name") or key, record, read_json(paths[key] / "metrics.json")))
    return strongest_first(rows)


def results_table(paths: dict) -> str:
    """Test metrics of every model of the demo as markdown, the strongest baseline first and marked."""
    from leader.metrics import format_table

    return format_table({name: metrics for name, _, metrics in _rows(paths)}, split="test")


def verdict(paths: dict, quick: bool) -> str:
    """What the closing table means: each model's place against the strongest baseline
    (`leader.baseline.standings`), so a row below it is not read as a result."""
    from leader.baseline import standings

    lines = standings(_rows(paths))
    if quick:
        lines.append(
            "--quick: the teacher is a tiny random Llama and the cohort small, so the teacher and KD rows "
            "check the pipeline; they are not results. `make demo` trains the real teacher."
        )
    elif any(line.endswith("use the baseline instead") for line in lines):
        lines.append(
            "The demo's teacher trains for a few minutes on this CPU; RESULTS.md has longer runs and what each tried."
        )
    return "\n".join(lines)


def closing_table(paths: dict, quick: bool = False) -> str:
    """The demo's last words: test metrics of every model (`results_table`), then speed and size."""
    from leader.export.bench import format_report

    lines = ["test split (mean ± std over 10 bootstrap rounds of 80%):", results_table(paths)]
    lines.append(verdict(paths, quick))
    lines.append(format_report(read_json(paths["bench"])))
    return "\n".join(lines)
