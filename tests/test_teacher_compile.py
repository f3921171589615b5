"""`leader teach --compile` (the default): the teacher's transformer blocks compiled with
torch.compile compute what the eager blocks compute, keep their parameter names, and say so in
teacher.json; without a C++ compiler the teacher trains eager and says why."""

from __future__ import annotations

import json

import pytest
import torch

from leader.cli import main
from leader.teacher.backbone import resolve
from leader.teacher.config import TeachConfig
from leader.teacher.train import MICRO_BATCH_SLOTS, build_model, training_slots
from tests.conftest import teach_args


def _model(tiny_model, tmp_path, compile: bool):
    cfg = TeachConfig(data=tmp_path, out=tmp_path / "t", base_model=str(tiny_model), compile=compile)
    torch.manual_seed(0)
    model, _ = build_model(cfg, resolve(str(tiny_model)), "fp32", 3)
    with torch.no_grad():  # LoRA B and the head start at zero: give them weights for gradients to flow
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith("head."):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    return model


def test_compiled_blocks_compute_what_eager_blocks_compute(tiny_model, tmp_path):
    eager, compiled = _model(tiny_model, tmp_path, False), _model(tiny_model, tmp_path, True)
    assert (eager.compiled, compiled.compiled) == ("off: --no-compile", "decoder layers")
    # compiled blocks keep fewer activations for the backward pass: twice the tokens per part
    assert training_slots(compiled) == 2 * training_slots(eager) == MICRO_BATCH_SLOTS
    # checkpoints and adapters written by either load into the other
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    ids = torch.randint(4, 16, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    grads = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        model.train()
        logits, pooled = model(ids, mask)
        logits.square().sum().backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        grads[name]["logits"] = logits.detach()
        with torch.inference_mode():  # the mode of validation and the feature pass
            grads[name]["inference"] = model.eval()(ids, mask)[1]
    assert any("lora_A" in n for n in grads["eager"]) and grads["eager"].keys() == grads["compiled"].keys()
    for name, value in grads["eager"].items():
        # fp32 both: fused kernels sum in another order (measured 1e-5 of the largest entry or less)
        assert (grads["compiled"][name] - value).abs().max() <= 1e-4 * value.abs().max(), name


def test_without_a_cxx_compiler_the_blocks_stay_eager(tiny_model, tmp_path, monkeypatch, capsys):
    import leader.teacher.backbone as backbone

    monkeypatch.setattr(backbone.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = _model(tiny_model, tmp_path, True)
    assert model.compiled == "off: no C++ compiler (g++) for torch.compile"
    assert "note: the teacher trains eager (no C++ compiler (g++) for torch.compile)" in capsys.readouterr().err
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_quantized_or_checkpointed_teachers_are_not_compiled(tiny_model, tmp_path):
    cfg = TeachConfig(data=tmp_path, out=tmp_path / "t", base_model=str(tiny_model), checkpointing=True)
    model, _ = build_model(cfg, resolve(str(tiny_model)), "fp32", 3)
    assert model.compiled == "off: not with --quantize or activation checkpointing"


@pytest.mark.parametrize("flag", ["--compile", "--no-compile"])
def test_teach_records_whether_it_compiled(rule_dataset_path, tiny_model, tmp_path, flag):
    out = tmp_path / "teacher"
    args = [a for a in teach_args(rule_dataset_path, out, tiny_model) if a != "--no-compile"]
    assert main([*args, flag]) == 0
    info = json.loads((out / "teacher.json").read_text())
    assert info["training"]["compiled"] == ("decoder layers" if flag == "--compile" else "off: --no-compile")
    assert json.loads((out / "run.json").read_text())["config"]["compile"] is (flag == "--compile")
    assert (out / "metrics.json").exists()
