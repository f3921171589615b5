"""Batches for the student: samples encoded once, trimmed per batch, grouped by visit count."""

from __future__ import annotations

import numpy as np
import torch

from leader.encoding import CODE_TYPES, INPUTS, Encoder
from leader.samples import Sample

from .model import Student

__all__ = ["INPUTS", "EncodedSamples", "length_batches", "predict"]


class EncodedSamples:
    """Samples encoded once (padded to the set's maximum); `batch` trims a subset to its own maximum."""

    def __init__(self, encoder: Encoder, samples: list[Sample]):
        self.arrays = encoder.encode_samples(samples)
        self.targets = encoder.multi_hot([s.labels for s in samples])
        # ids are left-packed (0 = padding), so a row's width is its count of non-zero ids
        self.n_visits = self.arrays["visit_mask"].sum(1).astype(np.int64)
        self.widths = {k: (self.arrays[k] > 0).sum(-1).max(-1) for k in CODE_TYPES}
        self.widths["profile"] = (self.arrays["profile"] > 0).sum(-1)
        self.widths["notes"] = (self.arrays["notes"] > 0).sum(-1)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The model inputs (`INPUTS`) and ``targets`` of samples `idx`, as tensors."""
        v = max(1, int(self.n_visits[idx].max()))
        out = {kind: self.arrays[kind][idx, :v, : max(1, int(self.widths[kind][idx].max()))] for kind in CODE_TYPES}
        for kind in ("profile", "notes"):
            out[kind] = self.arrays[kind][idx, : max(1, int(self.widths[kind][idx].max()))]
        out["visit_mask"] = self.arrays["visit_mask"][idx, :v]
        out["targets"] = self.targets[idx]
        return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in out.items()}


def length_batches(n_visits: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 32) -> list[np.ndarray]:
    """Shuffled batches of samples with similar visit counts: shuffle, sort each pool of
    `pool` batches by visit count, cut, shuffle the batches. A batch is padded to its longest
    sample, and one 8-visit patient among 1-visit ones multiplies the work of the batch."""
    order = rng.permutation(len(n_visits))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(n_visits[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def predict(model: Student, data: EncodedSamples, batch_size: int = 512) -> np.ndarray:
    """Probabilities [N, M] of an encoded set, in the set's order (model put in eval mode)."""
    model.eval()
    out = np.zeros(data.targets.shape, dtype=np.float32)
    order = np.argsort(data.n_visits, kind="stable")
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        batch = data.batch(idx)
        out[idx] = torch.sigmoid(model(*(batch[k] for k in INPUTS))).numpy()
    return out
