"""`leader bench` on model files of every format the runtime serves."""

from __future__ import annotations

import json

import onnx

from leader.cli import main
from leader.export.onnx_export import set_metadata
from leader.export.runtime import LEGACY_INPUTS, PREFIX, Recommender


def test_bench_runs_a_format_1_file_with_five_inputs(exported, tmp_path, capsys):
    """A file exported before the note encoder has no ``notes`` input: the bench feeds each
    session the inputs it declares, as the `Recommender` does, instead of failing on ``notes``."""
    proto = onnx.load(str(exported))
    kept = [i for i in proto.graph.input if i.name != "notes"]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    set_metadata(proto, {**{p.key: p.value for p in proto.metadata_props}, PREFIX + "format_version": "1"})
    legacy = tmp_path / "v1.onnx"
    onnx.save(proto, str(legacy))
    assert Recommender(legacy).inputs == list(LEGACY_INPUTS)
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(legacy), "--out", str(out), "--samples", "16", "--calls", "20"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    fp32 = report["engines"]["onnx_fp32"]
    assert 0 < fp32["batch1_p50_ms"] and fp32["batch256_grouped_visits_per_s"] > 0
    assert report["end_to_end"]["batch1_p50_ms"] > 0
