"""End to end on a tiny random Llama: teach, resume, features, evaluate, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.errors import LeaderError
from leader.samples import split_samples
from tests.conftest import crash_teacher_after_step, teach_args

FINAL_FILES = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "head.safetensors",
    "teacher.json",
    "metrics.json",
    "metrics.jsonl",
    "run.json",
    "checkpoint",
    "features",
}
CHECKPOINT_FILES = {"trainable.safetensors", "best.safetensors", "optimizer.pt", "rng.safetensors", "state.json"}

# the tiny teacher (tests/conftest.py: tiny_model, tiny_teacher) and every teacher trained here
# infer in fp32: these tests check the algorithm, on any CPU
pytestmark = pytest.mark.usefixtures("fp32_teacher_inference")


def read_tensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(path)


def test_teach_writes_a_self_describing_folder(tiny_teacher, rule_dataset_path, tiny_model):
    assert {p.name for p in tiny_teacher.iterdir()} == FINAL_FILES
    assert {p.name for p in (tiny_teacher / "checkpoint").iterdir()} == CHECKPOINT_FILES
    dataset = load_dataset(rule_dataset_path)
    info = json.loads((tiny_teacher / "teacher.json").read_text())
    run = json.loads((tiny_teacher / "run.json").read_text())
    assert run["kind"] == "teacher" and run["medications"] == dataset.medications == info["medications"]
    assert run["dataset"]["sha256"] == dataset.sha256
    assert run["split"] == {"how": "random", "seed": 0, "target": "all"}
    assert isinstance(run["thresholds"], float) and run["thresholds"] == info["threshold"]
    assert info["base_model"]["spec"] == str(tiny_model.resolve()) and len(info["base_model"]["sha256"]) == 64
    assert info["prompt"] == {"max_tokens": 192, "max_history": 3, "notes": True}
    assert info["training"]["steps"] == 4 and info["training"]["stopped"] == "steps"
    assert "torch" in info["versions"] and "peft" in info["versions"]
    adapter = json.loads((tiny_teacher / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and set(adapter["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    head = read_tensors(tiny_teacher / "head.safetensors")
    assert {k: v.shape for k, v in head.items()} == {
        "weight": (len(dataset.medications), 16),
        "bias": (len(dataset.medications),),
        "center": (16,),
        "scale": (16,),
    }
    assert info["pooling"] == "last"
    metrics = json.loads((tiny_teacher / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"} and set(metrics["test"]) == {"overall", "single", "multi"}
    log = [json.loads(line) for line in (tiny_teacher / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("split") == "val"] == [2, 4]
    [calibration] = [r for r in log if r.get("event") == "head calibration"]
    assert calibration["step"] == 0 and calibration["samples"] == min(512, len(split_samples(dataset)["train"]))
    config = json.loads((tiny_teacher / "run.json").read_text())["config"]  # the one copy of the options
    assert config["max_steps"] == 4 and config["lora_r"] == 8 and config["data"] == str(rule_dataset_path)


def test_training_moves_the_weights(tiny_teacher, tiny_teacher_probe):
    """Training steps, not only the calibration probe, shaped the head and the adapter."""
    head = read_tensors(tiny_teacher / "head.safetensors")
    probe = tiny_teacher_probe
    assert np.abs(probe["weight"]).max() > 0  # the probe fitted the zero-initialised head ...
    for key in ("center", "scale"):  # ... and set its input statistics, which training keeps
        np.testing.assert_array_equal(head[key], probe[key], err_msg=key)
    moved = np.abs(head["weight"] - probe["weight"]).max()
    assert moved > 1e-3 * np.abs(probe["weight"]).max(), moved  # ... then the steps moved it
    lora_b = [v for k, v in read_tensors(tiny_teacher / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and any(np.abs(v).max() > 0 for v in lora_b)  # LoRA B starts at zero


def test_resume_replays_the_interrupted_run_exactly(tiny_teacher, rule_dataset_path, tiny_model, tmp_path, monkeypatch):
    import leader.teacher.train as train
    from leader.teacher.config import TeachConfig

    real_save = crash_teacher_after_step(monkeypatch)
    out = tmp_path / "resumed"
    cfg = TeachConfig(
        data=rule_dataset_path,
        out=out,
        base_model=str(tiny_model),
        max_steps=4,
        eval_every=2,
        batch_size=4,
        precision="fp32",
        progress=False,
        compile=False,  # as teach_args
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    assert not (out / "run.json").exists() and json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert main(teach_args(rule_dataset_path, out, tiny_model)) == 2  # exists: needs --resume
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--resume")) == 0
    for name in ("adapter_model.safetensors", "head.safetensors"):
        ours, straight = read_tensors(out / name), read_tensors(tiny_teacher / name)
        assert ours.keys() == straight.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], straight[key], err_msg=key)
    drop = ("elapsed_s", "tokens_per_s")
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (d / "metrics.jsonl").read_text().splitlines()
        ]
        for d in (out, tiny_teacher)
    ]
    assert logs[0] == logs[1]
    # a finished run resumed again does nothing
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--resume")) == 0


def test_batches_trained_in_parts_train_as_whole_batches(rule_dataset_path, tiny_model, tmp_path, monkeypatch):
    """A batch over MICRO_BATCH_SLOTS token slots runs part by part (each part's loss weighted by
    its rows): the logged losses and the trained weights are the whole batches' (fp32, no dropout,
    so only the order of the sums differs)."""
    import leader.teacher.train as train

    runs = {}
    for slots in (0, 200):  # whole batches; parts of one or two prompts (eager: 100 slots, training_slots)
        monkeypatch.setattr(train, "MICRO_BATCH_SLOTS", slots)
        out = tmp_path / f"slots{slots}"
        args = teach_args(rule_dataset_path, out, tiny_model, "--lora-dropout", "0", "--no-cache-features")
        assert main(args) == 0
        log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        tensors = {**read_tensors(out / "adapter_model.safetensors"), **read_tensors(out / "head.safetensors")}
        runs[slots] = [r["train_loss"] for r in log if "train_loss" in r], tensors
    (whole_loss, whole), (parts_loss, parts) = runs[0], runs[200]
    np.testing.assert_allclose(parts_loss, whole_loss, rtol=1e-5)
    assert whole.keys() == parts.keys()
    for key in whole:
        np.testing.assert_allclose(parts[key], whole[key], rtol=1e-4, atol=1e-5 * np.abs(whole[key]).max(), err_msg=key)


def _budget_run(data, tiny_model, out):
    """A 100-epoch run of the tiny teacher with a 30 s --max-minutes budget (the tests fake the clock);
    returns its config and metrics.jsonl records."""
    import leader.teacher.train as train
    from leader.teacher.config import TeachConfig

    cfg = TeachConfig(
        data=data,
        out=out,
        base_model=str(tiny_model),
        epochs=100,
        batch_size=4,
        precision="fp32",
        max_minutes=0.5,
        progress=False,
        compile=False,
    )
    train.run(cfg)
    return cfg, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_time_budget_shrinks_the_schedule(rule_dataset_path, tiny_model, tmp_path, monkeypatch):
    """A fake clock (every reading 0.2 s later) makes the run deterministic: after the calibration
    steps the plan is cut to fit --max-minutes, the learning rate still decays to 0, and the
    training loop's time stays within the budget."""
    import types

    import leader.teacher.train as train

    clock = iter(0.2 * k for k in range(10**7))
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    out = tmp_path / "budget"
    cfg, log = _budget_run(rule_dataset_path, tiny_model, out)
    [event] = [r for r in log if r.get("event") == "time budget"]
    info = json.loads((out / "teacher.json").read_text())["training"]
    assert event["step"] == 1 + train.CALIBRATE_STEPS
    planned = 100 * -(-len(split_samples(load_dataset(rule_dataset_path))["train"]) // 4)
    assert train.CALIBRATE_STEPS < event["total_steps"] < planned / 10
    last_plan = [r for r in log if r.get("event") in ("time budget", "re-planned")][-1]
    assert 0.8 * last_plan["total_steps"] <= info["steps"] <= last_plan["total_steps"]  # the plan about fits
    assert info["stopped"] in ("steps", "time budget")
    assert info["seconds"] <= 0.5 * 60 + 1  # the last validation fits in the budget (to a few clock readings)
    assert [r["lr"] for r in log if "lr" in r][-1] < 0.2 * cfg.lr


def test_a_run_that_slows_down_is_re_planned_and_still_decays(rule_dataset_path, tiny_model, tmp_path, monkeypatch):
    """The machine halves its speed right after the calibration steps (a fake clock: 0.1 s a
    reading, then 0.2 s): the plan made from the calibration is twice too long, so without a
    re-plan the budget would stop the run at about half its schedule with the learning rate
    still near half. The validations re-fit the steps left, the rate decays from where it was
    without a jump, and the run still fits its budget."""
    import types

    import leader.teacher.train as train

    now, tick = [0.0], [0.1]

    def reading():
        now[0] += tick[0]
        return now[0]

    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=reading))
    fit_budget = train._Loop._fit_budget

    def slow_down_after(self, seconds_per_token):
        fit_budget(self, seconds_per_token)
        tick[0] = 0.2

    monkeypatch.setattr(train._Loop, "_fit_budget", slow_down_after)
    out = tmp_path / "slower"
    cfg, log = _budget_run(rule_dataset_path, tiny_model, out)
    [first] = [r for r in log if r.get("event") == "time budget"]
    replans = [r for r in log if r.get("event") == "re-planned"]
    info = json.loads((out / "teacher.json").read_text())["training"]
    assert replans and replans[0]["total_steps"] < 0.8 * first["total_steps"]
    assert info["seconds"] <= 0.5 * 60 + 1
    rates = [r["lr"] for r in log if "lr" in r]
    assert rates[-1] < 0.2 * cfg.lr
    assert all(b <= a for a, b in zip(rates, rates[1:]) if a < cfg.lr)  # past warmup, it only falls


def test_a_crash_before_any_checkpoint_leaves_nothing(rule_dataset_path, tiny_model, tmp_path, monkeypatch):
    import leader.teacher.train as train
    from leader.teacher.config import TeachConfig

    def crash(self):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train._Loop, "train", crash)
    out = tmp_path / "t"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(TeachConfig(data=rule_dataset_path, out=out, base_model=str(tiny_model), max_steps=2, progress=False))
    assert not out.exists()


def test_scores_from_the_feature_cache_equal_a_separate_pass(tiny_teacher, rule_dataset_path, tiny_model, tmp_path):
    """--no-cache-features scores validation and test in their own pass: same weights, same metrics."""
    out = tmp_path / "teacher"
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--no-cache-features")) == 0
    assert {p.name for p in out.iterdir()} == FINAL_FILES - {"features"}
    ours, theirs = (json.loads((d / "metrics.json").read_text())["test"]["overall"] for d in (tiny_teacher, out))
    for metric in ("jaccard_samples", "pr_auc_samples", "pred_count"):
        assert ours[metric]["value"] == pytest.approx(theirs[metric]["value"], abs=1e-6)


def test_a_4bit_qlora_teacher_trains_and_predicts(rule_dataset_path, tiny_model, tmp_path):
    """--quantize 4bit loads the base through bitsandbytes (NF4) on the CPU; inference keeps the
    4-bit base with the adapter unmerged."""
    from leader.teacher.infer import load_teacher, predict_probs

    out = tmp_path / "qlora"
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--quantize", "4bit", "--max-steps", "2")) == 0
    info = json.loads((out / "teacher.json").read_text())
    assert info["quantize"] == "4bit" and info["training"]["steps"] == 2
    teacher = load_teacher(out)
    kinds = {type(m).__name__ for m in teacher.model.modules()}
    assert "Linear4bit" in kinds  # bitsandbytes layers, not dequantised copies
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    probs = predict_probs(out, test, dataset)
    assert probs.shape == (len(test), len(dataset.medications)) and np.isfinite(probs).all()


def test_resume_refuses_other_options(tiny_teacher, rule_dataset_path, tiny_model, capsys):
    assert main(teach_args(rule_dataset_path, tiny_teacher, tiny_model, "--resume", "--lr", "0.1")) == 2
    assert "--lr" in capsys.readouterr().err


def test_features_are_cached_and_match_predictions(tiny_teacher, rule_dataset_path, hand_dataset, capsys):
    from leader.samples import make_samples
    from leader.teacher.features import ensure_features, load_features
    from leader.teacher.infer import predict_probs

    dataset = load_dataset(rule_dataset_path)
    assert (
        main(["teach", "features", "--teacher", str(tiny_teacher), "--data", str(rule_dataset_path), "--no-progress"])
        == 0
    )
    folder = Path(capsys.readouterr().out.strip())
    assert folder == tiny_teacher / "features" / dataset.sha256[:16]
    assert {p.name for p in folder.iterdir()} == {"features.safetensors", "index.json"}
    index = json.loads((folder / "index.json").read_text())
    samples = make_samples(dataset)
    assert index["sample_ids"] == [s.sample_id for s in samples] and index["hidden_size"] == 16
    assert index["dataset_sha256"] == dataset.sha256 and index["target"] == "all"
    ids, hidden, logits = load_features(tiny_teacher, dataset)
    assert ids == index["sample_ids"] and hidden.dtype == np.float16 and logits.dtype == np.float32
    assert hidden.shape == (len(samples), 16) and logits.shape == (len(samples), len(dataset.medications))
    # computed once: a second call reuses the files
    stamp = (folder / "features.safetensors").stat().st_mtime_ns
    assert ensure_features(tiny_teacher, dataset, progress=False) == folder
    assert (folder / "features.safetensors").stat().st_mtime_ns == stamp
    # the logits are the head applied to the pooled hidden state, and match predict_probs
    head = read_tensors(tiny_teacher / "head.safetensors")
    # (hidden is stored as fp16: each value is off by at most 2^-11 of itself, which bounds the logits)
    h = hidden.astype(np.float64)
    standardized = (h - head["center"]) / head["scale"]
    recomputed = standardized @ head["weight"].T.astype(np.float64) + head["bias"]
    bound = (np.abs(h) * 2.0**-11 / head["scale"]) @ np.abs(head["weight"].T) + 1e-5 * (1 + np.abs(logits))
    assert (np.abs(recomputed - logits) <= bound).all(), np.abs(recomputed - logits).max()
    assert bound.max() < 0.05 * np.abs(logits).max()  # a bound that can catch a wrong head or state
    probs = predict_probs(tiny_teacher, samples[:7], dataset)  # other batches, fp32: the same numbers
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits[:7].astype(np.float64))), atol=1e-5)
    # a corrupt cache is refused by load_features and recomputed by ensure_features
    (folder / "features.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LeaderError, match="corrupt"):
        load_features(tiny_teacher, dataset)
    ensure_features(tiny_teacher, dataset, progress=False)
    np.testing.assert_array_equal(load_features(tiny_teacher, dataset)[1], hidden)
    # another dataset with the same labels has no cache yet
    with pytest.raises(LeaderError, match="teach features"):
        load_features(tiny_teacher, hand_dataset)


def test_evaluate_cli_on_the_teacher(tiny_teacher, rule_dataset_path, tmp_path):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--teacher",
                str(tiny_teacher),
                "--data",
                str(rule_dataset_path),
                "--split",
                "test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    stored = json.loads((tiny_teacher / "metrics.json").read_text())["test"]
    for group in ("overall", "single", "multi"):
        assert result["metrics"]["test"][group]["n"] == stored[group]["n"]
    ours, theirs = result["metrics"]["test"]["overall"], stored["overall"]
    assert ours["jaccard_samples"]["value"] == pytest.approx(theirs["jaccard_samples"]["value"], abs=1e-6)
    assert ours["pr_auc_samples"]["value"] == pytest.approx(theirs["pr_auc_samples"]["value"], abs=1e-6)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_model_paths(rule_dataset_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEADER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "t"
    assert main(teach_args(rule_dataset_path, out, tmp_path / "missing")) == 2
    assert "no such file or folder" in one_error_line(capsys)
    fake = tmp_path / "model.gguf"
    fake.write_text("this is not a model")
    assert main(teach_args(rule_dataset_path, out, fake)) == 2
    assert "is not a GGUF file" in one_error_line(capsys)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    assert main(teach_args(rule_dataset_path, out, broken)) == 2
    assert "cannot read" in one_error_line(capsys)
    folder = tmp_path / "empty-model"
    folder.mkdir()
    assert main(teach_args(rule_dataset_path, out, folder)) == 2
    assert "config.json" in one_error_line(capsys)
    assert not out.exists()


def test_bad_options_and_data(rule_dataset_path, tiny_model, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--precision", "fp16")) == 2
    assert "needs a CUDA GPU" in one_error_line(capsys)
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--target-modules", "qkv")) == 2
    assert "qkv" in one_error_line(capsys)
    shutil.rmtree(out, ignore_errors=True)
    old = tmp_path / "old-data"
    shutil.copytree(rule_dataset_path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert main(teach_args(old, tmp_path / "t2", tiny_model)) == 2
    assert "format version" in one_error_line(capsys)
    assert main(["teach", "--out", str(tmp_path / "t3")]) == 2
    assert "--data" in one_error_line(capsys)
    assert main(teach_args(rule_dataset_path, tmp_path / "t4", tiny_model, "--resume")) == 2
    assert "nothing to resume" in one_error_line(capsys)


def test_teacher_refuses_a_dataset_with_other_labels(tiny_teacher, tmp_path, capsys):
    from leader.samples import make_samples
    from leader.teacher.infer import predict_probs
    from tests.conftest import MEDS, TITLES, hand_patients

    other = write_dataset(tmp_path / "other", hand_patients(), [*MEDS, "R03A"], TITLES, source="test")
    assert main(["teach", "features", "--teacher", str(tiny_teacher), "--data", str(other)]) == 2
    assert "other medication labels" in one_error_line(capsys)
    dataset = load_dataset(other)
    with pytest.raises(LeaderError, match="other medication labels"):
        predict_probs(tiny_teacher, make_samples(dataset), dataset)
    assert main(["teach", "features", "--teacher", str(tmp_path), "--data", str(other)]) == 2
    assert "not a finished teacher run" in one_error_line(capsys)


def launch(flags: list[str], args: list[str]) -> None:
    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher),
        "launch",
        *flags,
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "leader",
        *args,
    ]
    done = subprocess.run(
        command, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_multi_process_launch_gives_the_same_layout(tiny_teacher, rule_dataset_path, tiny_model, tmp_path):
    """Two processes over gloo on the CPU. Accelerate 1.15's `launch --cpu --num_processes 2`
    starts one process (more need mpirun), `--multi_gpu` starts two through torchrun: on a
    machine without a GPU leader joins them on the CPU. Both give the single-process layout."""
    expected = {p.name for p in tiny_teacher.iterdir()} - {"features"}
    for flags, processes in ((["--multi_gpu"], 2), (["--cpu"], 1)):
        out = tmp_path / flags[0].strip("-")
        launch(flags, teach_args(rule_dataset_path, out, tiny_model, "--precision", "auto"))
        # one process also writes the feature cache (--cache-features); several score in their own pass
        assert {p.name for p in out.iterdir()} == expected | ({"features"} if processes == 1 else set())
        assert {p.name for p in (out / "checkpoint").iterdir()} == CHECKPOINT_FILES
        info = json.loads((out / "teacher.json").read_text())
        assert info["training"]["processes"] == processes and info["training"]["steps"] == 4
        assert read_tensors(out / "checkpoint" / "rng.safetensors")["cpu"].shape[0] == processes
        metrics = json.loads((out / "metrics.json").read_text())
        ref = json.loads((tiny_teacher / "metrics.json").read_text())
        assert metrics["test"]["overall"]["n"] == ref["test"]["overall"]["n"]
