"""The teacher network and its batches.

    prompt tokens [B, T] -> LoRA-tuned backbone (AutoModel, no LM head) -> last hidden state [B, T, H]
    -> the last non-pad token of each row (right padding) [B, H]  (the "pooled" hidden state)
    -> medication head Linear(H, n_meds, bias=False) -> logits [B, n_meds]

Trained with binary cross-entropy per medication (LEADER, arXiv 2402.02803, section 3.2: the
LLM's vocabulary head is replaced by a medication output layer).

Batches are grouped by length: samples are shuffled, cut into pools of 64 batches, each pool is
sorted by length and cut into batches, and the batches are shuffled. Prompts of one batch then
have similar lengths, so little compute goes to padding.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from leader.errors import LeaderError

POOL_BATCHES = 64  # batches per length-sorting pool: large enough to pad little, small enough to stay random


class TeacherModel(nn.Module):
    """Backbone (a peft model, or a plain AutoModel at inference) plus the medication head."""

    def __init__(self, backbone: nn.Module, n_labels: int):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, n_labels, bias=False)
        # zero init: every medication starts at probability 0.5 and the first steps shape the head
        # instead of pushing random logits through the backbone's large (~45 norm) hidden states
        nn.init.zeros_(self.head.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits fp32 [B, M], pooled hidden state [B, H] in the backbone's compute dtype)."""
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(1).long() - 1
        pooled = states[torch.arange(states.shape[0], device=states.device), last]
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            logits = self.head(pooled.float())
        return logits, pooled


def add_lora(backbone: nn.Module, r: int, alpha: int, dropout: float, target_modules):
    """Wrap the backbone with peft LoRA adapters; only the adapters train (peft freezes the rest)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
    missing = [m for m in target_modules if m not in present]
    if missing:
        raise LeaderError(f"--target-modules {', '.join(missing)} not found in the model; it has e.g. {', '.join(sorted(present)[:8])}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none")
    return get_peft_model(backbone, config)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors (LoRA weights and the head), detached copies on CPU."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise KeyError(f"checkpoint tensors not in the model: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


# ---------------------------------------------------------------------------------------------
# batches


def length_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Training batches of sample indices, grouped by length (see the module docstring)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Inference batches: all samples sorted by length (longest first), then cut."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def collate(token_lists: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input_ids and attention_mask (int64 [B, T])."""
    width = max(len(t) for t in token_lists)
    ids = np.full((len(token_lists), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_lists), width), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of the token slots in `batches` that are padding."""
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / slots if slots else 0.0
