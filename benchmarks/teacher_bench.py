"""Teacher speed on this machine: LoRA training tokens/s (fp32, bf16, 4-bit QLoRA), feature
extraction tokens/s, and the share of padding in the teacher's batches.

    python -m benchmarks.teacher_bench                     # synthetic cohort of 2,000 patients
    python -m benchmarks.teacher_bench --data runs/data/synth --steps 8
    python -m benchmarks.teacher_bench --threads 1        # one core: against the default, how threads scale

Everything runs the embedded SmolLM2-135M-Instruct on real prompts of the cohort, batched as
`leader teach` batches them (length-grouped, batch 8, --max-tokens 256, each batch run in parts of
at most `training_slots` token slots). Training counts real
(non-pad) tokens through forward, backward and the AdamW step; one warm-up step is not timed.
Features time the merged bf16 model `leader teach features` uses (batch 16, sorted by length).
Both run compiled (`leader teach --compile`, the default) and eager (--no-compile), one warm-up
step or batch untimed. The bf16 ceiling is read before every mode and the median taken: on a
shared VM it moves by tens of percent from one minute to the next.
Prints a markdown table and writes benchmarks/results/teacher.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu

RESULTS = Path(__file__).resolve().parent / "results" / "teacher.json"
MODES = ("fp32", "bf16", "bf16-eager", "bf16-dropout", "bf16-checkpointed", "4bit")
"""Training modes timed: weights and autocast, with `leader teach`'s defaults (LoRA dropout 0,
blocks compiled) except in bf16-eager (--no-compile) and bf16-dropout (0.1); bf16-checkpointed
recomputes each layer in the backward pass (what prompts longer than `MICRO_BATCH_SLOTS` train
with), in whole batches, eager as `leader teach` runs it."""
TARGETS = {  # share of the measured bf16 ceiling, by CPU kind (the performance issue)
    "amx": {"training": 0.25, "features": 0.50},
    "avx512_bf16": {"training": 0.50, "features": 0.75},
}


def _cohort(data: Path | None, tmp: Path):
    from leader.cohort import load_dataset
    from leader.data.synth import synthesize

    if data is None:
        data = tmp / "synth"
        synthesize(data, 2000, seed=0)
    return load_dataset(data)


def _train_rate(backbone, mode: str, tokens, labels, batches, steps: int, max_tokens: int) -> float:
    """Real tokens per second of LoRA training steps in `mode`."""
    import torch

    from leader.teacher.config import TeachConfig
    from leader.teacher.model import collate, micro_batches
    from leader.teacher.train import build_model, training_slots

    torch.manual_seed(0)
    cfg = TeachConfig(
        data=".",
        out=".",
        quantize="4bit" if mode == "4bit" else None,
        max_tokens=max_tokens,
        compile=mode != "bf16-eager",
        **({"lora_dropout": 0.1} if mode == "bf16-dropout" else {}),
    )
    model, tokenizer = build_model(cfg, backbone, "fp32" if mode == "fp32" else "bf16", labels.shape[1])
    slots = training_slots(model)
    if mode == "bf16-checkpointed":
        model.backbone.base_model.model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        slots = 0
    lengths = [len(t) for t in tokens]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = mode != "fp32"
    done, start = 0, 0.0
    for k, batch in enumerate(batches[: steps + 1]):
        if k == 1:
            done, start = 0, time.perf_counter()
        for part in micro_batches(batch, lengths, slots):  # as `leader teach` runs a batch
            ids, mask = collate([tokens[i] for i in part], tokenizer.pad_token_id)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits, _ = model(ids, mask)
            y = torch.from_numpy(labels[part])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) * (len(part) / len(batch))
            loss.backward()
            done += int(mask.sum())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return done / (time.perf_counter() - start)


def _feature_rate(backbone, tokens, n_labels: int, batch_size: int, compile: bool) -> float:
    """Real tokens per second of the merged bf16 teacher (what `leader teach features` runs)."""
    import torch

    from leader.teacher.backbone import bf16_supported, compile_layers, load_backbone, short_prompt_attention
    from leader.teacher.config import PROJECTIONS
    from leader.teacher.infer import forward
    from leader.teacher.model import TeacherModel, add_lora

    use_bf16 = bf16_supported()
    attention = short_prompt_attention(max(len(t) for t in tokens), training=False)  # as `load_teacher` chooses
    base, tokenizer = load_backbone(backbone, dtype=torch.bfloat16 if use_bf16 else None, attention=attention)
    model = TeacherModel(add_lora(base, 8, 32, 0.1, PROJECTIONS).merge_and_unload(), n_labels)
    if compile:
        compile_layers(model)
    autocast = torch.bfloat16 if use_bf16 else None
    forward(model, tokens[:batch_size], tokenizer.pad_token_id, batch_size, torch.device("cpu"), autocast)  # warm-up
    start = time.perf_counter()
    forward(model, tokens, tokenizer.pad_token_id, batch_size, torch.device("cpu"), autocast)
    return sum(len(t) for t in tokens) / (time.perf_counter() - start)


def _machine() -> dict:
    """CPU model and the flags that decide bf16 speed (AVX512-BF16, AMX), and torch's threads."""
    import torch

    return {"cpus": torch.get_num_threads(), **cpu()}


def _matmul_gflops(rows: int = 2048, seconds: float = 2.0) -> float:
    """bf16 GFLOP/s of the teacher's most common product (rows x 576 @ 576 x 1536, as an MLP
    projection of SmolLM2): the ceiling every teacher figure here lives under."""
    import torch

    a = torch.randn(rows, 576, dtype=torch.bfloat16)
    b = torch.randn(576, 1536, dtype=torch.bfloat16)
    a @ b  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2.0 * rows * 576 * 1536 * done / (time.perf_counter() - start) / 1e9


def _flops_per_token(backbone) -> float:
    """Forward FLOPs of one token through the backbone's linear layers (2 x their weights)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(backbone.folder)
    head_dim = c.hidden_size // c.num_attention_heads
    attn = c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
    mlp = 3 * c.hidden_size * c.intermediate_size
    return 2.0 * c.num_hidden_layers * (attn + mlp)


def run(data: Path | None, steps: int, batch_size: int, max_tokens: int, n_features: int) -> dict:
    from transformers import AutoTokenizer

    from leader.metrics import labels_matrix
    from leader.samples import split_samples
    from leader.teacher.backbone import resolve
    from leader.teacher.model import length_batches, padding_share, sorted_batches
    from leader.teacher.prompt import PromptSettings, encode

    with tempfile.TemporaryDirectory() as tmp:
        dataset = _cohort(data, Path(tmp))
    train = split_samples(dataset)["train"]
    backbone = resolve("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(backbone.folder)
    tokens = encode(train, dataset.titles, PromptSettings(max_tokens=max_tokens), tokenizer)
    lengths = [len(t) for t in tokens]
    labels = labels_matrix(train, dataset.medications)
    batches = length_batches(lengths, batch_size, seed=0)
    ceilings = [_matmul_gflops()]
    result = {
        "machine": _machine(),
        "forward_flops_per_token": _flops_per_token(backbone),
        "setup": {
            "model": backbone.name,
            "batch_size": batch_size,
            "max_tokens": max_tokens,
            "steps": steps,
            "train_samples": len(train),
            "mean_prompt_tokens": sum(lengths) / len(lengths),
        },
        "padding_share": {
            "train_batches": padding_share(batches, lengths),
            "feature_batches": padding_share(sorted_batches(lengths, 16), lengths),
        },
        "train_tokens_per_s": {},
    }
    for mode in MODES:
        result["train_tokens_per_s"][mode] = _train_rate(backbone, mode, tokens, labels, batches, steps, max_tokens)
        print(f"train {mode}: {result['train_tokens_per_s'][mode]:.0f} tokens/s", file=sys.stderr, flush=True)
        ceilings.append(_matmul_gflops())
    for compiled, key in ((True, "feature_tokens_per_s"), (False, "feature_tokens_per_s_eager")):
        result[key] = _feature_rate(backbone, tokens[:n_features], len(dataset.medications), 16, compiled)
        ceilings.append(_matmul_gflops())
    result["bf16_matmul_gflops_readings"] = [round(c, 1) for c in ceilings]
    result["bf16_matmul_gflops"] = statistics.median(ceilings)
    return result


def cpu_kind(flags: list[str]) -> str | None:
    """ "amx", "avx512_bf16" or None: the CPU kinds whose targets differ."""
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def table(result: dict) -> str:
    rate, pad = result["train_tokens_per_s"], result["padding_share"]
    setup, machine = result["setup"], result["machine"]
    ceiling = result["bf16_matmul_gflops"] * 1e9 / result["forward_flops_per_token"]
    train_share, feature_share = rate["bf16"] / (ceiling / 2), result["feature_tokens_per_s"] / ceiling
    kind = cpu_kind(machine["bf16_flags"])
    target = TARGETS.get(kind or "", {})

    def share(value: float, name: str) -> str:
        if name not in target:
            return "– (no bf16 instructions: no target)"
        return f">= {100 * target[name]:.0f}% of the ceiling on {kind}: {'met' if value >= target[name] else 'MISSED'}"

    rows = [
        ("training, fp32", f"{rate['fp32']:,.0f} tokens/s", "–"),
        (
            "training, bf16 weights + autocast (`leader teach`'s defaults)",
            f"{rate['bf16']:,.0f} tokens/s = {100 * train_share:.1f}% of the training ceiling",
            share(train_share, "training"),
        ),
        (
            "training, bf16, blocks not compiled (--no-compile)",
            f"{rate['bf16-eager']:,.0f} tokens/s = {100 * rate['bf16-eager'] / (ceiling / 2):.1f}%",
            "–",
        ),
        ("training, bf16, LoRA dropout 0.1", f"{rate['bf16-dropout']:,.0f} tokens/s", "–"),
        ("training, bf16, activation checkpointing", f"{rate['bf16-checkpointed']:,.0f} tokens/s", "–"),
        (
            "training, 4-bit QLoRA (NF4, bf16 compute)",
            f"{rate['4bit']:,.0f} tokens/s = {rate['4bit'] / rate['bf16']:.2f} x bf16",
            "report; >= 1.0 x where the CPU allows",
        ),
        (
            "features, merged bf16, blocks compiled (`leader teach features`)",
            f"{result['feature_tokens_per_s']:,.0f} tokens/s = {100 * feature_share:.1f}% of the forward ceiling",
            share(feature_share, "features"),
        ),
        (
            "features, merged bf16, not compiled (--no-compile)",
            f"{result['feature_tokens_per_s_eager']:,.0f} tokens/s = "
            f"{100 * result['feature_tokens_per_s_eager'] / ceiling:.1f}%",
            "–",
        ),
        ("padding share, training batches", f"{100 * pad['train_batches']:.1f}%", "< 10%"),
        ("padding share, feature batches", f"{100 * pad['feature_batches']:.1f}%", "< 10%"),
    ]
    lines = [
        f"CPU: {machine['processor']} ({', '.join(machine['bf16_flags']) or 'no bf16 instructions'}; "
        f"{'AMX' if kind == 'amx' else 'no AMX'}); bf16 matmul {result['bf16_matmul_gflops']:,.0f} GFLOP/s on "
        f"{machine['cpus']} threads (the ceiling: median of {len(result['bf16_matmul_gflops_readings'])} readings, "
        f"{min(result['bf16_matmul_gflops_readings']):,.0f}-{max(result['bf16_matmul_gflops_readings']):,.0f}), so the linear layers alone cap a forward pass at {ceiling:,.0f} "
        f"tokens/s and a training step (forward + input gradients) at about {ceiling / 2:,.0f}.",
        "",
        f"Teacher: {setup['model']} + LoRA r=8, batch {setup['batch_size']}, prompts <= {setup['max_tokens']} tokens "
        f"(mean {setup['mean_prompt_tokens']:.0f}), {machine['cpus']} CPU threads",
        "",
        "| what | measured | target |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset (default: synthesize 2,000 patients)")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per mode")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--feature-samples", type=int, default=256, help="prompts timed for feature extraction")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, every core)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run(args.data, args.steps, args.batch_size, args.max_tokens, args.feature_samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result), end="")
    return result


if __name__ == "__main__":
    main()
