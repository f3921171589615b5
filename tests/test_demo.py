"""`leader demo --quick` end to end (tiny random teacher), and the README's Python snippet on its model."""

from __future__ import annotations

import re
from pathlib import Path

from leader.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_demo_writes_every_stage(quick_demo, capsys):
    names = sorted(p.name for p in quick_demo.iterdir() if not p.name.startswith("."))
    assert names == [
        "frequency",
        "logistic",
        "model.bench.json",
        "model.int8.onnx",
        "model.md",
        "model.onnx",
        "report.html",
        "student",
        "student-kd",
        "student-no-teacher",
        "synth",
        "teacher",
        "tiny-llama",
    ]
    page = (quick_demo / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # bars, counts, curves, speed
    # the students start from the strongest baseline's logits when it reads what they read
    import json

    history = json.loads((quick_demo / "logistic" / "run.json").read_text())["config"]["history"]
    for student in ("student", "student-kd", "student-no-teacher"):
        prior = json.loads((quick_demo / student / "run.json").read_text()).get("prior")
        assert (prior is not None and prior["path"] == str((quick_demo / "logistic").resolve())) == (
            history == "previous"
        )


def test_quick_demo_resumes(quick_demo, capsys):
    assert main(["demo", "--quick", "--patients", "120", "--out", str(quick_demo)]) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 8  # cohort, 2 baselines, teacher + features, students, export, bench, report
    assert "student (logit KD)" in err and "runtime-only process" in err


def test_readme_python_snippet_runs(quick_demo, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(code.replace("runs/model.onnx", str(quick_demo / "model.onnx")), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[1].startswith("[(")


def test_quick_demo_exports_the_student_that_validates_best(quick_demo, capsys):
    """The exported model is the student with the best validation Jaccard; the demo says which."""
    import json

    import onnx

    students = ("student-no-teacher", "student-kd", "student")
    val = {
        json.loads((quick_demo / s / "run.json").read_text())["name"]: json.loads(
            (quick_demo / s / "metrics.json").read_text()
        )["val"]["overall"]["jaccard_samples"]["value"]
        for s in students
    }
    meta = {p.key: p.value for p in onnx.load(str(quick_demo / "model.onnx"), load_external_data=False).metadata_props}
    exported = json.loads(meta["leader.model"])["name"]
    assert val[exported] == max(val.values())
    assert main(["demo", "--quick", "--patients", "120", "--out", str(quick_demo)]) == 0
    assert f"exported student: {exported} (the best validation Jaccard of the three)" in capsys.readouterr().err


def test_the_demo_students_start_from_the_baseline_when_it_reads_what_they_read(tmp_path, monkeypatch):
    """`_student_stages` passes the logistic run as --prior exactly when its history is "previous"
    (the quick demo's 120 patients choose "all", so the fixture above shows the other branch)."""
    import json

    import leader.demo as demo
    from leader.config import DemoConfig

    seen = []
    monkeypatch.setattr(demo, "_train_students", lambda todo, workers: seen.extend(todo))
    paths = {key: tmp_path / key for key in ("data", "teacher", "logistic", *(k for k, _ in demo.STUDENTS))}
    for history in ("previous", "all"):
        paths["logistic"].mkdir(exist_ok=True)
        (paths["logistic"] / "run.json").write_text(json.dumps({"kind": "baseline", "config": {"history": history}}))
        seen.clear()
        demo._student_stages(DemoConfig(out=tmp_path), lambda name, done, fn: fn(), paths)
        assert len(seen) == 3
        assert all(
            options.get("prior") == (str(paths["logistic"]) if history == "previous" else None) for options in seen
        )
        assert all(options["name"].endswith(" + baseline prior") == (history == "previous") for options in seen)
