"""Small pieces of the teacher: schedule, batching, config."""

from __future__ import annotations

import dataclasses
import random

import pytest

from leader.cli.options import field_docs
from leader.errors import LeaderError
from leader.teacher.config import TeachConfig
from leader.teacher.model import collate, length_batches, micro_batches, padding_share, sorted_batches
from leader.teacher.train import lr_factor


def test_lr_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, total=10, warmup=2) for s in range(11)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a > b for a, b in zip(factors[2:10], factors[3:11], strict=True))
    assert factors[10] == 0.0
    assert lr_factor(0, total=5, warmup=0) == 1.0


def test_a_re_planned_schedule_decays_on_from_where_it_was():
    before = lr_factor(40, total=100, warmup=5)
    after = [lr_factor(s, total=70, warmup=5, since=40, start=before) for s in range(40, 71)]
    assert after[0] == before and after[-1] == 0.0
    assert all(a > b for a, b in zip(after, after[1:]))


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


def test_micro_batches_keep_the_order_and_the_token_budget():
    lengths = [100, 120, 250, 256, 256, 256, 256, 256, 300]
    batch = [3, 4, 5, 6, 7, 0, 1, 2]
    assert micro_batches(batch, lengths, 0) == [batch]  # 0: the batch whole
    assert micro_batches(batch, lengths, 8 * 256) == [batch]
    assert micro_batches(batch, lengths, 1024) == [[3, 4, 5, 6], [7, 0, 1, 2]]
    parts = micro_batches(batch, lengths, 1000)  # 3 rows of 256 fit: parts of 3, 3 and 2
    assert [len(p) for p in parts] == [2, 3, 3] and sum(parts, []) == batch
    assert micro_batches([8, 0], lengths, 200) == [[8], [0]]  # a prompt over the budget goes alone


def test_collate_pads_on_the_right():
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_config_errors_name_the_flag(tmp_path):
    for field, value, flag in (
        ("lr", -1.0, "--lr"),
        ("precision", "fp8", "--precision"),
        ("quantize", "2bit", "--quantize"),
        ("warmup", 1.5, "--warmup"),
        ("max_tokens", 4, "--max-tokens"),
    ):
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


def test_fast_dropout_drops_the_asked_share_and_keeps_the_expectation():
    import torch

    from leader.teacher.model import FastDropout

    torch.manual_seed(0)
    layer = FastDropout(0.1).train()
    x = torch.ones(400, 1001, requires_grad=True)  # odd size: the last 64-bit draw is only partly used
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # 400k Bernoulli(0.1) draws: std 0.0005
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale
    assert not torch.equal(layer(x), layer(x))  # a new mask per call
    layer.eval()
    assert layer(x) is x


@pytest.mark.slow
def test_fast_dropout_replaces_peft_dropout_and_follows_the_seed():
    import torch
    from transformers import LlamaConfig, LlamaModel

    from leader.teacher.model import FastDropout, add_lora

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = add_lora(LlamaModel(config), 4, 8, 0.25, ("q_proj", "down_proj")).train()
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p == 0.25]
    assert dropouts and all(type(m) is FastDropout for m in dropouts)
    ids = torch.randint(0, 64, (2, 9))

    def run(seed):
        torch.manual_seed(seed)
        return model(input_ids=ids).last_hidden_state

    # LoRA B starts at zero, so give it weights for dropout to show in the output
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_short_prompts_train_eager_and_run_in_causal_blocks_on_a_cpu():
    import torch

    from leader.teacher.attention import NAME
    from leader.teacher.backbone import EAGER_MAX_TOKENS, short_prompt_attention

    if torch.cuda.is_available():
        pytest.skip("CPU rule")
    for tokens in (192, EAGER_MAX_TOKENS):
        assert short_prompt_attention(tokens, training=True) == "eager"
        assert short_prompt_attention(tokens, training=False) == NAME
    assert short_prompt_attention(EAGER_MAX_TOKENS + 1, training=True) is None
    assert short_prompt_attention(EAGER_MAX_TOKENS + 1, training=False) is None


def test_a_loaded_teacher_runs_the_attention_it_trained_with(tiny_teacher):
    """Features and inference (`load_teacher`) compute eager attention on a CPU for the teacher's
    short prompts, as training did, in causal query blocks (the same arithmetic: the blocks drop
    only keys the causal mask zeroes; tests/test_teacher_attention.py)."""
    import json

    import torch

    from leader.teacher.attention import NAME
    from leader.teacher.backbone import short_prompt_attention
    from leader.teacher.infer import load_teacher

    if torch.cuda.is_available():
        pytest.skip("CPU rule")
    max_tokens = json.loads((tiny_teacher / "teacher.json").read_text())["prompt"]["max_tokens"]
    loaded = load_teacher(tiny_teacher)
    assert short_prompt_attention(max_tokens, training=False) == NAME
    assert loaded.model.backbone.config._attn_implementation == NAME


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_ignores_right_padding(pooling):
    import torch
    from transformers import LlamaConfig, LlamaModel

    from leader.teacher.model import TeacherModel, collate

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = TeacherModel(LlamaModel(config), 5, pooling).eval()
    short, long = [5, 6, 7], [8, 9, 10, 11, 12, 13]
    with torch.no_grad():
        _, alone = model(*collate([short], 0))
        _, padded = model(*collate([short, long], 0))
        states = model.backbone(input_ids=torch.tensor([short])).last_hidden_state[0]
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    expected = states.mean(0) if pooling == "mean" else states[-1]
    torch.testing.assert_close(alone[0], expected, atol=1e-5, rtol=1e-5)


def test_an_unknown_pooling_is_refused(tmp_path):
    with pytest.raises(LeaderError, match="--pooling"):
        TeachConfig(data=tmp_path, out=tmp_path / "t", pooling="max")


@pytest.mark.slow
def test_calibrate_head_standardises_and_fits_a_probe():
    import torch
    from transformers import LlamaConfig, LlamaModel

    from leader.teacher.model import TeacherModel, calibrate_head

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = TeacherModel(LlamaModel(config), 2)
    # a huge constant dimension (as an LLM's massive activations) next to an informative one
    pooled = torch.randn(400, 8)
    pooled[:, 0] = 45.0 + 0.01 * torch.randn(400)
    labels = torch.stack([(pooled[:, 3] > 0).float(), torch.zeros(400)], 1)
    loss = calibrate_head(model, pooled, labels)
    standardized = (pooled - model.center) / model.scale
    assert torch.allclose(standardized[:, 1:].mean(0), torch.zeros(7), atol=1e-5)
    assert torch.allclose(standardized[:, 1:].std(0), torch.ones(7), atol=0.02)
    assert standardized[:, 0].std() < 0.15  # a near-constant dimension is not blown up to unit variance
    logits = model.head(standardized)
    assert ((logits[:, 0] > 0).float() == labels[:, 0]).float().mean() > 0.95
    assert (logits[:, 1] < -3).all()  # a label never seen stays near probability 0
    assert loss < 0.2


def test_prompts_over_the_token_budget_recompute_layers_with_the_same_gradients(tmp_path, monkeypatch):
    """Past MICRO_BATCH_SLOTS tokens a prompt trains with activation checkpointing; the recomputed
    layers replay the same dropout masks, so the gradients are those of the plain backward."""
    import torch

    import leader.teacher.train as train
    from leader.teacher.backbone import resolve
    from leader.teacher.tiny import make_tiny_backbone
    from leader.teacher.train import MICRO_BATCH_SLOTS, build_model

    monkeypatch.setattr(train, "short_prompt_attention", lambda max_tokens, training: "eager")  # one attention for both

    folder = make_tiny_backbone(tmp_path / "tiny", ["a b c d e f g h i j k l"], layers=2)
    backbone = resolve(str(folder))
    ids = torch.randint(4, 16, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    grads = {}
    # plain; --checkpointing asked for; a token budget over MICRO_BATCH_SLOTS (on by itself)
    for key, max_tokens, asked in (("plain", 192, False), ("asked", 192, True), ("long", MICRO_BATCH_SLOTS + 1, False)):
        cfg = TeachConfig(
            data=tmp_path,
            out=tmp_path / "t",
            base_model=str(folder),
            max_tokens=max_tokens,
            lora_dropout=0.25,
            checkpointing=asked,
            compile=False,  # eager in every variant: torch.compile draws other dropout masks
        )
        torch.manual_seed(0)
        model, _ = build_model(cfg, backbone, "fp32", 3)
        assert model.backbone.base_model.model.is_activation_checkpointing == (key != "plain")
        with torch.no_grad():  # LoRA B and the head start at zero: give them weights for gradients to flow
            for name, p in model.named_parameters():
                if "lora_B" in name or name.startswith("head."):
                    p.normal_()
        model.train()
        torch.manual_seed(1)
        logits, _ = model(ids, mask)
        logits.square().sum().backward()
        grads[key] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    plain = grads.pop("plain")
    assert any("lora_A" in n for n in plain)
    for recomputed in grads.values():
        assert plain.keys() == recomputed.keys()
        for name in plain:
            torch.testing.assert_close(recomputed[name], plain[name], msg=name)
