"""The teacher network and its batches.

    prompt tokens [B, T] -> LoRA-tuned backbone (AutoModel, no LM head) -> last hidden state [B, T, H]
    -> the last non-pad token of each row (right padding), or the mean of the non-pad tokens
       (--pooling mean) [B, H]  (the "pooled" hidden state)
    -> standardised per dimension (statistics of training samples, see `calibrate_head`)
    -> medication head Linear(H, n_meds) -> logits [B, n_meds]

Trained with binary cross-entropy per medication (LEADER, arXiv 2402.02803, section 3.2: the
LLM's vocabulary head is replaced by a medication output layer).

Batches are grouped by length: samples are shuffled, cut into pools of 64 batches, each pool is
sorted by length and cut into batches, and the batches are shuffled. Prompts of one batch then
have similar lengths, so little compute goes to padding.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from leader.errors import LeaderError

from .config import POOLINGS

POOL_BATCHES = 64  # batches per length-sorting pool: large enough to pad little, small enough to stay random


class TeacherModel(nn.Module):
    """Backbone (a peft model, or a plain AutoModel at inference) plus the medication head.

    `pooling` "last" reads the last non-pad token (LEADER's choice, the default); "mean" averages
    every non-pad token's last hidden state, which hands the head each code title and note word
    directly instead of what the model has gathered into the final token.
    """

    def __init__(self, backbone: nn.Module, n_labels: int, pooling: str = "last"):
        super().__init__()
        if pooling not in POOLINGS:
            raise LeaderError(f"--pooling must be one of {', '.join(POOLINGS)}, got '{pooling}'")
        self.backbone = backbone
        self.pooling = pooling
        self.compiled = "off"
        """What `leader.teacher.backbone.compile_layers` did to the backbone ("decoder layers"), or why not."""
        hidden = backbone.config.hidden_size
        # The head reads the pooled state standardised per dimension (`calibrate_head` sets the
        # statistics from training samples). An LLM's last hidden state has a few huge, nearly
        # constant dimensions next to small informative ones; Adam moves every weight by about the
        # learning rate, so on raw states the head learns little but an offset in a 1-epoch run.
        # Centred inputs need the bias the constant dimensions used to provide.
        self.register_buffer("center", torch.zeros(hidden))
        self.register_buffer("scale", torch.ones(hidden))
        self.head = nn.Linear(hidden, n_labels, bias=True)
        # zero init until calibrated: every medication starts at probability 0.5
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits fp32 [B, M], pooled hidden state [B, H] in the backbone's compute dtype)."""
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            weights = attention_mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            last = attention_mask.sum(1).long() - 1
            pooled = states[torch.arange(states.shape[0], device=states.device), last]
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            logits = self.head((pooled.float() - self.center) / self.scale)
        return logits, pooled

    def head_state(self) -> dict[str, torch.Tensor]:
        """What head.safetensors holds: the head's weight and bias and the input statistics."""
        tensors = {"weight": self.head.weight, "bias": self.head.bias, "center": self.center, "scale": self.scale}
        return {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}

    def load_head_state(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.head.weight.copy_(tensors["weight"])
            self.head.bias.copy_(tensors["bias"])
            self.center.copy_(tensors["center"])
            self.scale.copy_(tensors["scale"])


def input_statistics(pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, scale) [H] that standardise the head's input, from pooled states [N, H] of
    training samples; a dimension that barely varies gets its scale floored at 1% of the mean
    variance (its standardised values stay small instead of amplifying noise)."""
    pooled = pooled.float()
    var = pooled.var(0, unbiased=False)
    return pooled.mean(0), torch.sqrt(var + 0.01 * var.mean())


def standardise_head(model: TeacherModel, pooled: torch.Tensor) -> None:
    """Set the head's input statistics from `pooled` [N, H] and its weights to zero: the head adds
    nothing yet, so a teacher with a prior (`leader.teacher.prior`) starts as that baseline."""
    center, scale = input_statistics(pooled)
    weight = torch.zeros_like(model.head.weight)
    model.load_head_state(
        {"weight": weight, "bias": torch.zeros_like(model.head.bias), "center": center, "scale": scale}
    )


def calibrate_head(
    model: TeacherModel, pooled: torch.Tensor, labels: torch.Tensor, l2: float = 1e-3, iterations: int = 200
) -> float:
    """Set the head's input statistics from `pooled` [N, H] (states of training samples) and fit
    the head to `labels` [N, M] on them (full-batch Adam with an L2 penalty: a linear probe), so
    training starts from what the untuned model already knows (`input_statistics`). Returns the
    probe's final loss.
    """
    pooled, labels = pooled.float(), labels.float()
    center, scale = input_statistics(pooled)
    x = (pooled - center) / scale
    weight = torch.zeros(labels.shape[1], x.shape[1], requires_grad=True)
    prior = labels.mean(0).clamp(1e-3, 1 - 1e-3)
    bias = torch.log(prior / (1 - prior)).requires_grad_(True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(iterations):
        loss = nn.functional.binary_cross_entropy_with_logits(x @ weight.T + bias, labels) + l2 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.load_head_state({"weight": weight.detach(), "bias": bias.detach(), "center": center, "scale": scale})
    return float(loss.detach())


def add_lora(backbone: nn.Module, r: int, alpha: int, dropout: float, target_modules):
    """Wrap the backbone with peft LoRA adapters; only the adapters train (peft freezes the rest)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
    missing = [m for m in target_modules if m not in present]
    if missing:
        raise LeaderError(
            f"--target-modules {', '.join(missing)} not found in the model; it has e.g. {', '.join(sorted(present)[:8])}"
        )
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none")
    model = get_peft_model(backbone, config)
    for module in model.modules():
        # peft copies each LoRA input to the adapter's fp32 before dropout; under bf16 autocast the
        # adapter matmul runs in bf16 anyway, so the copies only cost time
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, layer in list(dropouts.items()):
                if type(layer) is nn.Dropout:
                    dropouts[name] = FastDropout(layer.p)
    return model


class FastDropout(nn.Dropout):
    """nn.Dropout whose mask costs a quarter of the random numbers.

    torch draws a CPU dropout mask one 32-bit Mersenne-Twister number per element, on one
    thread: with LoRA on every projection that was 30% of a SmolLM2 training step on 2 cores.
    Here each 64-bit draw gives four 16-bit uniforms, so an element is kept with probability
    1 - p rounded to 1/65536 (exact for p = 0.1 to five digits). Same generator, same
    checkpointed RNG state, same expectation-preserving 1/(1-p) scaling.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        uniform = draws.view(torch.int16)[:n].view(x.shape)
        dropped = uniform < int(round(self.p * 65536)) - 32768
        return (x * (1.0 / (1.0 - self.p))).masked_fill(dropped, 0.0)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors (LoRA weights, the head and its input statistics), copies on CPU."""
    tensors = {n: p for n, p in model.named_parameters() if p.requires_grad}
    tensors.update(model.named_buffers(recurse=False))
    return {n: t.detach().to("cpu", copy=True).contiguous() for n, t in tensors.items()}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers(recurse=False))
    missing = [n for n in state if n not in tensors]
    if missing:
        raise KeyError(f"checkpoint tensors not in the model: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            tensors[name].copy_(tensor.to(tensors[name].device, tensors[name].dtype))


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


def micro_batches(batch: list[int], lengths: list[int], max_slots: int) -> list[list[int]]:
    """`batch` cut into consecutive parts of at most `max_slots` token slots each (rows x the
    longest row), as even as possible; one sample longer than `max_slots` is a part of its own.
    0: the batch whole. A training batch is run part by part with gradients added up: the same
    step, with the activation memory of a part."""
    if max_slots <= 0:
        return [batch]
    rows = max(1, max_slots // max(lengths[i] for i in batch))
    parts = math.ceil(len(batch) / rows)
    return [batch[k * len(batch) // parts : (k + 1) * len(batch) // parts] for k in range(parts)]


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
