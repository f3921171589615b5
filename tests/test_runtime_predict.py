"""`leader predict` (streaming JSONL) and `leader bench` through the CLI."""

from __future__ import annotations

import gzip
import json

import pytest

from leader.cli import main
from leader.export.bench import TARGETS
from leader.export.runtime import Recommender
from tests.conftest import rule_patients


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_streams_every_patient_in_batches(exported, tmp_path):
    patients = rule_patients(30, seed=7)
    source = tmp_path / "patients.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients))
    out = tmp_path / "recs.jsonl"
    argv = [
        "predict",
        "--model",
        str(exported),
        "--input",
        str(source),
        "--out",
        str(out),
        "--top-k",
        "3",
        "--batch",
        "7",
    ]
    assert main(argv) == 0
    recs = _lines(out)
    assert [r["line"] for r in recs] == list(range(1, 31))
    assert [r["patient_id"] for r in recs] == [p["patient_id"] for p in patients]
    direct = Recommender(exported).recommend(patients, top_k=3)
    for rec, want in zip(recs, direct, strict=True):
        assert rec["recommended"] == want.recommended
        assert [r["medication"] for r in rec["ranked"]] == [m for m, _ in want.ranked]
        assert len(rec["ranked"]) == 3 and {"name", "probability"} <= set(rec["ranked"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients.jsonl", "recs.jsonl"]


def test_predict_reports_bad_lines_serves_the_rest_and_exits_2(exported, tmp_path, capsys):
    good = [json.dumps(p) for p in rule_patients(2, seed=8)]
    empty_visit = json.dumps({"profile": {}, "visits": [{"diagnoses": [], "procedures": [], "medications": []}]})
    source = tmp_path / "patients.jsonl"
    source.write_bytes(
        "\n".join([good[0], "{not json", "", '{"profile": {}, "visits": []}', empty_visit, good[1]]).encode()
        + b"\n\xff\xfe broken\n"
    )
    out = tmp_path / "recs.jsonl"
    assert main(["predict", "--model", str(exported), "--input", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err
    assert "line 4: patient has no visits" in err
    assert "line 5: visit 1 has no codes" in err
    assert "line 7: not UTF-8 text" in err
    assert "served 2 of 6 patients" in err and "4 bad lines" in err
    assert [r["line"] for r in _lines(out)] == [1, 6]


def test_predict_to_stdout_from_gzip(exported, tmp_path, capsys):
    source = tmp_path / "patients.jsonl.gz"
    with gzip.open(source, "wt") as handle:
        handle.write("".join(json.dumps(p) + "\n" for p in rule_patients(3, seed=2)))
    assert main(["predict", "--model", str(exported), "--input", str(source), "--top-k", "0"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs) == 3 and all(len(r["ranked"]) == 6 for r in recs)


def test_predict_bad_arguments(exported, tmp_path, capsys):
    out = tmp_path / "recs.jsonl"
    assert main(["predict", "--model", str(exported), "--input", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
    source = tmp_path / "p.jsonl"
    source.write_text(json.dumps(rule_patients(1)[0]) + "\n")
    assert main(["predict", "--model", str(source), "--input", str(source), "--out", str(out)]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    assert main(["predict", "--model", str(exported), "--input", str(source), "--top-k", "-1"]) == 2
    assert not out.exists()


def test_bench_measures_every_engine_and_a_torch_free_process(exported, student_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--model",
        str(exported),
        "--student",
        str(student_dir),
        "--out",
        str(out),
        "--samples",
        "64",
        "--calls",
        "50",
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["engines"]) == {"onnx_fp32", "onnx_int8", "torch"}
    for engine in report["engines"].values():
        assert 0 < engine["batch1_p50_ms"] <= engine["batch1_p99_ms"]
        assert engine["batch256_padded_visits_per_s"] > 0 and engine["batch256_grouped_visits_per_s"] > 0
    assert report["end_to_end"]["batch1_p50_ms"] > 0 and report["end_to_end"]["batch256_visits_per_s"] > 0
    assert report["runtime_process"]["torch_imported"] is False and report["runtime_process"]["peak_rss_mb"] > 0
    assert report["runtime_process"]["served"] > 0
    assert report["teacher"] == {"skipped": "no --teacher given"}
    assert report["files"]["int8_size_ratio"] < 1
    assert set(report["targets"]) == set(TARGETS)
    grouped = {k: e["batch256_grouped_visits_per_s"] for k, e in report["engines"].items()}
    assert report["targets"]["onnx_over_torch"]["value"] == pytest.approx(grouped["onnx_fp32"] / grouped["torch"])
    table = capsys.readouterr().out
    assert "onnx_fp32" in table and "teacher: skipped" in table


def test_bench_times_the_teacher_per_visit(exported, student_dir, tiny_teacher, tmp_path, capsys):
    """The session's tiny random Llama teacher (1 layer, hidden 16), timed with `--teacher`."""
    teacher = tiny_teacher
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--model",
        str(exported),
        "--student",
        str(student_dir),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--samples",
        "16",
        "--calls",
        "20",
    ]
    assert main(argv) == 0
    t = json.loads(out.read_text())["teacher"]
    assert t["visits"] > 0 and t["per_visit_ms"] > 0 and t["batched_per_visit_ms"] > 0
    assert t["teacher_student_ratio"] == pytest.approx(
        t["per_visit_ms"] / json.loads(out.read_text())["engines"]["onnx_fp32"]["batch1_p50_ms"]
    )
    assert "ms per visit at batch 1" in capsys.readouterr().out
