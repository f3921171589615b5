"""Small pieces of the teacher: schedule, batching, config."""

from __future__ import annotations

import dataclasses
import random

import pytest

from leader.errors import LeaderError
from leader.teacher.config import TeachConfig, field_docs
from leader.teacher.model import collate, length_batches, padding_share, sorted_batches
from leader.teacher.train import lr_factor


def test_lr_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, total=10, warmup=2) for s in range(11)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a > b for a, b in zip(factors[2:10], factors[3:11], strict=True))
    assert factors[10] == 0.0
    assert lr_factor(0, total=5, warmup=0) == 1.0


def test_length_batches_cover_every_sample_once_and_pad_little():
    rng = random.Random(1)
    lengths = [rng.randint(20, 300) for _ in range(1000)]
    batches = length_batches(lengths, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == length_batches(lengths, 8, seed=3) and batches != length_batches(lengths, 8, seed=4)
    shuffled = list(range(1000))
    rng.shuffle(shuffled)
    random_batches = [shuffled[k : k + 8] for k in range(0, 1000, 8)]
    assert padding_share(batches, lengths) < 0.05 < padding_share(random_batches, lengths)
    inference = sorted_batches(lengths, 16)
    assert sorted(i for b in inference for i in b) == list(range(1000))
    assert padding_share(inference, lengths) < 0.02


def test_collate_pads_on_the_right():
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_config_errors_name_the_flag(tmp_path):
    for field, value, flag in (("lr", -1.0, "--lr"), ("precision", "fp8", "--precision"), ("quantize", "2bit", "--quantize"),
                               ("warmup", 1.5, "--warmup"), ("max_tokens", 4, "--max-tokens")):
        with pytest.raises(LeaderError, match=flag):
            TeachConfig(data=tmp_path, out=tmp_path / "o", **{field: value})


def test_config_round_trips_and_every_field_has_help(tmp_path):
    cfg = TeachConfig(data=tmp_path, out=tmp_path / "o", max_steps=3, target_modules=("q_proj",))
    again = TeachConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.differences(cfg) == []
    assert TeachConfig.from_dict({**cfg.to_dict(), "lr": 0.1}).differences(cfg) == ["lr"]
    assert TeachConfig.from_dict({**cfg.to_dict(), "max_minutes": 5.0}).differences(cfg) == []
    docs = field_docs(TeachConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TeachConfig)}


def test_the_teach_cli_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, leader.cli.teach; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
