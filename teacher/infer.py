"""A trained teacher at inference: loading a run folder, batched forward passes, probabilities.

    predict_probs(run_dir, samples, dataset) -> float64 [N, M]   (what `leader evaluate` calls)

Inference runs in bf16 where the CPU or GPU supports it, with the LoRA update merged into the
bf16 weights (measured here: 1.3x faster than unmerged, cosine to fp32 >= 0.9998); a teacher
trained on a 4-bit or 8-bit base keeps that base and its unmerged adapter. Batches are sorted
by length so padding stays small.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leader.errors import LeaderError
from leader.io import read_json, sha256_file

from .prior import Prior, recorded_prior
from .prompt import PromptSettings, encode

TEACHER_FORMAT = 2  # 2: the head has a bias and input statistics
FILES = ("adapter_config.json", "adapter_model.safetensors", "head.safetensors", "teacher.json")


@dataclass
class LoadedTeacher:
    """A teacher ready to run: model, tokenizer and what teacher.json says."""

    model: object
    """TeacherModel in eval mode."""
    tokenizer: object
    info: dict
    """teacher.json."""
    settings: PromptSettings
    device: object
    autocast: object
    """torch dtype for autocast (bfloat16) or None."""
    sha256: str
    """Identity of the teacher: hash of its base model, adapter and head."""
    prior: Prior | None = None
    """The baseline whose logits are added to the head's (`leader.teacher.prior`), or None."""


def read_teacher_info(run_dir: str | Path) -> dict:
    """teacher.json of a run folder, checking the folder has every teacher file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LeaderError(f"teacher folder not found: {run_dir}; train one with `leader teach`")
    missing = [name for name in FILES if not (run_dir / name).is_file()]
    if missing:
        raise LeaderError(
            f"{run_dir} is not a finished teacher run (missing {', '.join(missing)}); train it with `leader teach` or --resume it"
        )
    info = read_json(run_dir / "teacher.json", "teacher.json")
    if info.get("format") != TEACHER_FORMAT:
        raise LeaderError(
            f"{run_dir}/teacher.json has format {info.get('format')}, this leader reads {TEACHER_FORMAT}; train the teacher again"
        )
    return info


def teacher_sha256(run_dir: str | Path, info: dict) -> str:
    """One hash over the base model's sha256, the adapter and the head (a prior is checked by
    `recorded_prior` whenever the teacher is loaded)."""
    run_dir = Path(run_dir)
    parts = [
        info["base_model"]["sha256"],
        sha256_file(run_dir / "adapter_model.safetensors"),
        sha256_file(run_dir / "head.safetensors"),
    ]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def check_labels(info: dict, dataset, run_dir) -> None:
    """Refuse a dataset whose medication labels differ from the teacher's outputs."""
    if list(info.get("medications", [])) != list(dataset.medications):
        ours, theirs = len(info.get("medications", [])), len(dataset.medications)
        raise LeaderError(
            f"{run_dir} was trained on other medication labels ({ours}) than {dataset.path} ({theirs}); "
            "use the dataset the teacher was trained on, or train a teacher on this one"
        )


def load_teacher(run_dir: str | Path, precision: str = "auto", compile: bool = False) -> LoadedTeacher:
    """Load a teacher run folder for inference (`precision`: auto, bf16 or fp32; `compile`: its
    transformer blocks with torch.compile, which pays over a whole dataset, not a few samples)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from .backbone import bf16_supported, compile_layers, load_backbone, resolve, short_prompt_attention
    from .model import TeacherModel

    run_dir = Path(run_dir)
    info = read_teacher_info(run_dir)
    prior = recorded_prior(info, run_dir)  # checked before the slow part
    base = info["base_model"]
    backbone = resolve(base["spec"])
    if backbone.sha256 != base["sha256"]:
        raise LeaderError(
            f"the base model {base['spec']} differs from the one {run_dir} was trained on "
            f"(sha256 {backbone.sha256[:12]}... vs {base['sha256'][:12]}...); pass the original model"
        )
    quantize = info.get("quantize")
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_supported())
    dtype = torch.bfloat16 if use_bf16 and quantize is None else torch.float32
    settings = PromptSettings(**info["prompt"])
    attention = short_prompt_attention(settings.max_tokens, training=False)
    model, tokenizer = load_backbone(backbone, quantize, dtype=dtype, attention=attention)
    for module in model.modules():
        # bitsandbytes' fast CPU kernel for 4-bit inference repacks weights in blocks and fails on
        # layers whose sides are not multiples of 64 (real models have none; tiny test models do)
        sides = (getattr(module, "in_features", 0), getattr(module, "out_features", 0))
        if hasattr(module, "support_avx512bf16_for_cpu") and any(side % 64 for side in sides):
            module.support_avx512bf16_for_cpu = False
    model = PeftModel.from_pretrained(model, run_dir, is_trainable=False)
    if quantize is None:
        model = model.merge_and_unload()
    teacher = TeacherModel(model, len(info["medications"]), info.get("pooling", "last"))
    head = load_file(run_dir / "head.safetensors")
    expected = {k: tuple(v.shape) for k, v in teacher.head_state().items()}
    if {k: tuple(v.shape) for k, v in head.items()} != expected:
        raise LeaderError(
            f"{run_dir}/head.safetensors does not fit the model and labels of teacher.json; train the teacher again"
        )
    teacher.load_head_state(head)
    if compile and quantize is None:
        teacher.compiled = compile_layers(model)
    device = torch.device("cuda") if torch.cuda.is_available() and quantize is None else torch.device("cpu")
    teacher.to(device).eval()
    autocast = torch.bfloat16 if use_bf16 else None
    return LoadedTeacher(teacher, tokenizer, info, settings, device, autocast, teacher_sha256(run_dir, info), prior)


def forward(
    model,
    token_lists: list[list[int]],
    pad_id: int,
    batch_size: int,
    device,
    autocast=None,
    rank: int = 0,
    world: int = 1,
    progress: bool = False,
    desc: str = "teacher",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run `model` over prompts in length-sorted batches.

    With `world` > 1 this process takes every world-th batch (starting at `rank`). Returns
    (indices int64 [n], pooled hidden float32 [n, H], logits float32 [n, M]) for the samples it ran,
    in the order of `indices`.
    """
    import torch
    from tqdm import tqdm

    from .model import collate, sorted_batches

    lengths = [len(t) for t in token_lists]
    batches = sorted_batches(lengths, batch_size)[rank::world]
    done, hidden, logits = [], [], []
    bar = tqdm(
        total=sum(lengths[i] for b in batches for i in b),
        desc=desc,
        unit="tok",
        unit_scale=True,
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    was_training = model.training
    model.eval()
    with (
        torch.inference_mode(),
        torch.autocast(device_type=device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None),
    ):
        for batch in batches:
            ids, mask = collate([token_lists[i] for i in batch], pad_id)
            out, pooled = model(ids.to(device), mask.to(device))
            done += batch
            hidden.append(pooled.float().cpu().numpy())
            logits.append(out.float().cpu().numpy())
            bar.update(int(mask.sum()))
    bar.close()
    model.train(was_training)
    width_h = model.head.in_features
    width_m = model.head.out_features
    return (
        np.asarray(done, dtype=np.int64),
        np.concatenate(hidden) if hidden else np.zeros((0, width_h), np.float32),
        np.concatenate(logits) if logits else np.zeros((0, width_m), np.float32),
    )


def gather_logits(
    accelerator, model, token_lists, pad_id, batch_size, device, autocast, desc="teacher", progress=False
):
    """Logits float32 [N, M] of every prompt, computed by all processes of `accelerator` (each
    takes a share of the batches) and gathered on every process, in the prompts' order."""
    import torch

    world, rank = accelerator.num_processes, accelerator.process_index
    idx, _, logits = forward(
        model,
        token_lists,
        pad_id,
        batch_size,
        device,
        autocast,
        rank,
        world,
        progress and accelerator.is_main_process,
        desc,
    )
    if world > 1:
        n_max = int(accelerator.gather(torch.tensor([len(idx)], device=device)).max().item())
        pad_idx = torch.full((n_max,), -1, dtype=torch.int64)
        pad_idx[: len(idx)] = torch.from_numpy(idx)
        pad_log = torch.zeros((n_max, logits.shape[1]), dtype=torch.float32)
        pad_log[: len(idx)] = torch.from_numpy(logits)
        all_idx = accelerator.gather(pad_idx.to(device)).cpu().numpy()
        all_log = accelerator.gather(pad_log.to(device)).cpu().numpy()
        keep = all_idx >= 0
        idx, logits = all_idx[keep], all_log[keep]
    out = np.zeros((len(token_lists), logits.shape[1]), dtype=np.float32)
    out[idx] = logits
    return out


def run_teacher(teacher: LoadedTeacher, samples, titles: dict, batch_size: int = 16, progress: bool = False):
    """(pooled hidden float32 [N, H], logits float32 [N, M]) of `samples`, in their order; the
    logits include the prior's when the teacher has one."""
    tokens = encode(samples, titles, teacher.settings, teacher.tokenizer)
    idx, hidden, logits = forward(
        teacher.model,
        tokens,
        teacher.tokenizer.pad_token_id,
        batch_size,
        teacher.device,
        teacher.autocast,
        progress=progress,
    )
    order = np.argsort(idx)
    hidden, logits = hidden[order], logits[order]
    if teacher.prior is not None:
        logits = logits + teacher.prior.logits(samples)
    return hidden, logits


def predict_probs(run_dir: Path, samples: list, dataset) -> np.ndarray:
    """Medication probabilities float64 [N, M] of a teacher run for `samples` of `dataset`."""
    info = read_teacher_info(run_dir)
    check_labels(info, dataset, run_dir)
    if not samples:
        return np.zeros((0, len(info["medications"])))
    teacher = load_teacher(run_dir)
    _, logits = run_teacher(teacher, samples, dataset.titles, progress=sys.stderr.isatty())
    return sigmoid(logits)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities float64 of teacher logits (the teacher's one conversion)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
