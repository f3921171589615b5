"""`leader report`: one self-contained HTML file with the tables and pictures."""

from __future__ import annotations

import json
import re

import pytest

from leader.baseline import BaselineConfig
from leader.baseline import run as run_baseline
from leader.cli import main
from leader.report import ReportConfig, run


@pytest.fixture(scope="module")
def baseline_runs(rule_dataset_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [run_baseline(BaselineConfig(rule_dataset_path, root / m, method=m)) for m in ("frequency", "logistic")]


@pytest.mark.slow
def test_report_is_self_contained(baseline_runs, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "engines": {
                    "onnx fp32": {
                        "batch1_p50_ms": 0.2,
                        "batch1_p99_ms": 0.4,
                        "batch256_grouped_visits_per_s": 30000.0,
                        "bytes": 2_000_000,
                    }
                },
                "teacher": {"per_visit_ms": 300.0},
            }
        )
    )
    out = run(ReportConfig(baseline_runs, tmp_path / "report.html", bench=bench))
    page = out.read_text()
    # pictures are embedded, nothing is fetched from elsewhere
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", page)
    assert images == ["model comparison", "medication counts", "speed and size"]
    assert "http://" not in page and "https://" not in page
    assert page.count("<tr>") >= 3 and ">frequency<" in page and ">logistic<" in page
    assert "onnx fp32" in page and "teacher (LLM)" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "report.html"]  # no temporary left


def test_report_cli_errors(tmp_path):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")]) == 2
    assert not (tmp_path / "r.html").exists()


def test_report_says_which_models_do_not_clear_the_strongest_baseline(tmp_path):
    from leader.report import _Run, _standings_html, _strongest_first

    def metrics(val, test):
        return {
            s: {"overall": {"jaccard_samples": {"mean": v, "std": 0.004, "value": v}}}
            for s, v in (("val", val), ("test", test))
        }

    runs = _strongest_first(
        [
            _Run(tmp_path / "f", {"kind": "baseline", "name": "frequency"}, metrics(0.30, 0.29)),
            _Run(tmp_path / "l", {"kind": "baseline", "name": "logistic"}, metrics(0.53, 0.52)),
            _Run(tmp_path / "t", {"kind": "teacher", "name": "teacher"}, metrics(0.45, 0.44)),
            _Run(tmp_path / "s", {"kind": "student", "name": "student <KD>"}, metrics(0.55, 0.54)),
        ]
    )
    page = _standings_html(runs, "test")
    assert page.startswith("<p>Against the strongest baseline (logistic, test Jaccard 0.5200 ± 0.0040):</p>")
    assert "<li>teacher: -20.0 std, below it: not yet meaningful, use the baseline instead</li>" in page
    assert "<li>student &lt;KD&gt;: +5.0 std, above it: a result</li>" in page
    assert "frequency" not in page  # baselines are the bar, not judged against it


def test_report_reads_a_median_of_benches_and_refuses_a_json_without_engines(baseline_runs, tmp_path):
    """The runtime benchmark's ``{"median": ..., "runs": [...]}`` is read through its median; a JSON
    with no engines is one error before anything is written, not an empty speed section."""
    from leader.errors import LeaderError
    from leader.report import read_bench

    engine = {"batch1_p50_ms": 0.2, "batch1_p99_ms": 0.4, "batch256_grouped_visits_per_s": 3e4, "bytes": 2e6}
    median = tmp_path / "median.json"
    median.write_text(json.dumps({"median": {"engines": {"onnx_fp32": engine}}, "runs": []}))
    assert read_bench(median)["engines"]["onnx_fp32"] == engine
    for body in ({"median": {}, "runs": []}, {"engines": {}}, [1, 2]):
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps(body))
        with pytest.raises(LeaderError, match="not a `leader bench` JSON"):
            read_bench(wrong)
        out = tmp_path / "r.html"
        assert main(["report", str(baseline_runs[0]), "--bench", str(wrong), "--out", str(out)]) == 2
        assert not out.exists()
