"""Teacher speed on this machine: LoRA training tokens/s (fp32, bf16, 4-bit QLoRA), feature
extraction tokens/s, and the share of padding in the teacher's batches.

    python -m benchmarks.teacher_bench                     # synthetic cohort of 2,000 patients
    python -m benchmarks.teacher_bench --data runs/data/synth --steps 8

Everything runs the embedded SmolLM2-135M-Instruct on real prompts of the cohort, batched as
`leader teach` batches them (length-grouped, batch 8, --max-tokens 256). Training counts real
(non-pad) tokens through forward, backward and the AdamW step; one warm-up step is not timed.
Features time the merged bf16 model `leader teach features` uses (batch 16, sorted by length).
Prints a markdown table and writes benchmarks/results/teacher.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "teacher.json"
MODES = ("fp32", "bf16", "4bit")


def _cohort(data: Path | None, tmp: Path):
    from leader.cohort import load_dataset
    from leader.data.synth import synthesize

    if data is None:
        data = tmp / "synth"
        synthesize(data, 2000, seed=0)
    return load_dataset(data)


def _train_rate(backbone, mode: str, tokens, labels, batches, steps: int) -> float:
    """Real tokens per second of LoRA training steps in `mode`."""
    import torch

    from leader.teacher.backbone import load_backbone
    from leader.teacher.config import PROJECTIONS
    from leader.teacher.model import TeacherModel, add_lora, collate

    dtype = torch.bfloat16 if mode == "bf16" else None
    base, tokenizer = load_backbone(backbone, "4bit" if mode == "4bit" else None, dtype=dtype)
    for module in base.modules():  # as leader.teacher.train does for 4-bit bases
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    torch.manual_seed(0)
    model = TeacherModel(add_lora(base, 8, 32, 0.1, PROJECTIONS), labels.shape[1]).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = mode != "fp32"
    done, start = 0, 0.0
    for k, batch in enumerate(batches[: steps + 1]):
        if k == 1:
            done, start = 0, time.perf_counter()
        ids, mask = collate([tokens[i] for i in batch], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, _ = model(ids, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels[batch]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done += int(mask.sum())
    return done / (time.perf_counter() - start)


def _feature_rate(backbone, tokens, n_labels: int, batch_size: int) -> float:
    """Real tokens per second of the merged bf16 teacher (what `leader teach features` runs)."""
    import torch

    from leader.teacher.backbone import bf16_supported, load_backbone
    from leader.teacher.config import PROJECTIONS
    from leader.teacher.infer import forward
    from leader.teacher.model import TeacherModel, add_lora

    use_bf16 = bf16_supported()
    base, tokenizer = load_backbone(backbone, dtype=torch.bfloat16 if use_bf16 else None)
    model = TeacherModel(add_lora(base, 8, 32, 0.1, PROJECTIONS).merge_and_unload(), n_labels)
    autocast = torch.bfloat16 if use_bf16 else None
    forward(model, tokens[:batch_size], tokenizer.pad_token_id, batch_size, torch.device("cpu"), autocast)  # warm-up
    start = time.perf_counter()
    forward(model, tokens, tokenizer.pad_token_id, batch_size, torch.device("cpu"), autocast)
    return sum(len(t) for t in tokens) / (time.perf_counter() - start)


def run(data: Path | None, steps: int, batch_size: int, max_tokens: int, n_features: int) -> dict:
    import torch
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
    result = {
        "machine": {"cpus": torch.get_num_threads(), "processor": platform.processor() or platform.machine()},
        "setup": {"model": backbone.name, "batch_size": batch_size, "max_tokens": max_tokens, "steps": steps,
                  "train_samples": len(train), "mean_prompt_tokens": sum(lengths) / len(lengths)},
        "padding_share": {
            "train_batches": padding_share(batches, lengths),
            "feature_batches": padding_share(sorted_batches(lengths, 16), lengths),
        },
        "train_tokens_per_s": {},
    }
    for mode in MODES:
        result["train_tokens_per_s"][mode] = _train_rate(backbone, mode, tokens, labels, batches, steps)
        print(f"train {mode}: {result['train_tokens_per_s'][mode]:.0f} tokens/s", flush=True)
    result["feature_tokens_per_s"] = _feature_rate(backbone, tokens[:n_features], len(dataset.medications), 16)
    return result


def table(result: dict) -> str:
    rate, pad = result["train_tokens_per_s"], result["padding_share"]
    rows = [
        ("training, fp32", f"{rate['fp32']:,.0f} tokens/s", "–"),
        ("training, bf16 weights + autocast", f"{rate['bf16']:,.0f} tokens/s", "650"),
        ("training, 4-bit QLoRA (NF4, bf16 compute)", f"{rate['4bit']:,.0f} tokens/s", "800"),
        ("features, merged bf16", f"{result['feature_tokens_per_s']:,.0f} tokens/s", "2,000"),
        ("padding share, training batches", f"{100 * pad['train_batches']:.1f}%", "< 10%"),
        ("padding share, feature batches", f"{100 * pad['feature_batches']:.1f}%", "< 10%"),
    ]
    setup = result["setup"]
    lines = [
        f"Teacher: {setup['model']} + LoRA r=8, batch {setup['batch_size']}, prompts <= {setup['max_tokens']} tokens "
        f"(mean {setup['mean_prompt_tokens']:.0f}), {result['machine']['cpus']} CPU threads",
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
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.data, args.steps, args.batch_size, args.max_tokens, args.feature_samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result), end="")
    return result


if __name__ == "__main__":
    main()
