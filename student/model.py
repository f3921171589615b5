"""The student: a small multi-encoder network over code IDs (LEADER, arXiv 2402.02803, section 3.3).

    diagnoses / procedures / medications [B,V,C] -> set encoder per type -> [B,V,d] each
    profile [B,P] -> profile encoder -> [B,d], added at visit slot 0 of the medication sequence
    (the pseudo medication record: a first visit has no earlier prescription, it has a profile)
    visit j = concat(diagnoses_j, procedures_j, medications_j) [B,V,3d]
    notes [B,T] -> note encoder (word embeddings summed / sqrt(count), Linear) -> [B,3d], added to the current visit
                  (and one weight per word and label, summed, added to the logits)
    -> visit encoder (one transformer layer, positional embeddings) -> current visit's output [B,3d]
    -> Linear -> ReLU (the mediator, [B,hidden]) -> Linear (+ the note's word weights) -> logits [B,n_labels]

One visit encoder over the concatenated visit vectors (rather than one per code type) and a
profile encoder without attention keep the graph at four transformer layers: batch-1 latency in
onnxruntime is mostly per-node overhead. The note encoder (when `n_notes` > 0) has no attention
either: a bag of words is what beat the student (the logistic baseline's note block), and it costs
two gathers, two masked sums and one matrix product.

`forward` is pure tensor code (no data-dependent Python control flow; masks come from the ids and
`visit_mask`), so `torch.onnx.export(dynamo=True)` works with dynamic batch, visit and code axes.
Every set and visit sequence starts with a learned, always-present token, so a visit with no codes
of a type or a patient with one visit never meets a fully masked attention row (no NaN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from leader.encoding import PAD

FF_MULT = 2  # transformer feed-forward width = FF_MULT * dim: the sets are short, more buys nothing


@dataclass
class StudentConfig:
    """Sizes of the student; the vocabulary sizes come from `leader.encoding.Encoder.vocabs`."""

    n_diagnoses: int
    """Diagnosis vocabulary size, including pad (0) and unk (1)."""
    n_procedures: int
    """Procedure vocabulary size, including pad and unk."""
    n_medications: int
    """Medication (input) vocabulary size, including pad and unk."""
    n_profile: int
    """Profile-token vocabulary size, including pad and unk."""
    n_labels: int
    """Number of medication labels the head predicts (the dataset's label list)."""
    dim: int = 64
    """Embedding and encoder width d (ARCHITECTURE.md: 64)."""
    hidden: int = 128
    """Width of the head's hidden layer, the mediator that feature KD reads (ARCHITECTURE.md: 128)."""
    heads: int = 4
    """Attention heads in every transformer layer; must divide `dim`."""
    dropout: float = 0.1
    """Dropout in the encoders and the head (training only)."""
    max_visits: int = 8
    """Positional embeddings for this many visits (the Encoder's max_visits)."""
    teacher_hidden: int = 0
    """Teacher hidden size for the KD projection into the teacher's space; 0 = no projection."""
    kd_layer: str = "mediator"
    """Student layer that feature KD reads: "mediator" (LEADER) or "patient" (visit encoder output, 3d)."""
    kd_proj: str = "linear"
    """KD projection: "linear" (LEADER) or "mlp" (Linear-ReLU-Linear)."""
    n_notes: int = 0
    """Note-word vocabulary size, including pad and unk; 0 = no note encoder (the `notes` input is
    ignored: the model of earlier versions, whose config.json lacks this field)."""
    prior: bool = False
    """Add a logistic baseline's logits to the student's (`BaselineLogits`, `leader distill
    --prior`); False in the config.json of earlier versions."""

    def __post_init__(self):
        if self.kd_layer not in ("mediator", "patient") or self.kd_proj not in ("linear", "mlp"):
            raise ValueError(
                f"kd_layer must be mediator|patient and kd_proj linear|mlp, got {self.kd_layer}, {self.kd_proj}"
            )
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        for name in ("n_diagnoses", "n_procedures", "n_medications", "n_profile", "n_labels", "max_visits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.n_notes < 0:
            raise ValueError("n_notes must be 0 (no note encoder) or the note vocabulary size")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _transformer(cfg: StudentConfig, width: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, cfg.heads, FF_MULT * width, cfg.dropout, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)


MASKED = 1e9
"""Subtracted from the attention scores of padding: exp(-1e9 + score) is 0 in float32, as
exp(-inf) is, so the result equals `nn.MultiheadAttention`'s -inf mask (no row is all padding)."""


def encode_layer(encoder: nn.TransformerEncoder, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`encoder(x, src_key_padding_mask=keep == 0)` for x [N, L, w] and keep [N, L] (1.0 = real,
    0.0 = padding): the module itself (its dropouts in training, torch's fused kernel in eval),
    except while exporting to ONNX, where `export_layer` writes the same arithmetic."""
    if torch.compiler.is_exporting() and not encoder.training:
        return export_layer(encoder, x, keep)
    return encoder(x, src_key_padding_mask=keep == 0)


def export_layer(encoder: nn.TransformerEncoder, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The eval arithmetic of a one-layer `nn.TransformerEncoder` (post-norm, ReLU, the module's
    own weights), written for a small ONNX graph: `nn.MultiheadAttention` exports through a
    sequence-first layout and a boolean mask expanded to -inf, about 85 nodes a layer, most of
    them reshapes, transposes and shape arithmetic that cost onnxruntime more than the products at
    batch 1. Here the products run on the rows [N * L, w], so each linear layer is one Gemm (its
    bias, and the ReLU, fused in), the heads come out of one Split, and the key transpose folds
    into the score product: under 30 nodes (ARCHITECTURE.md, "The exported graph")."""
    layer = encoder.layers[0]
    attention = layer.self_attn
    n, width, heads = x.shape[0], x.shape[2], attention.num_heads
    rows = x.reshape(-1, width)
    qkv = nn.functional.linear(rows, attention.in_proj_weight, attention.in_proj_bias)
    # -1 for the length: the graph needs no arithmetic on the shape for it
    qkv = qkv.reshape(n, -1, 3 * heads, width // heads).transpose(1, 2)  # [N, 3h, L, w/h]
    q, k, v = qkv.split(heads, dim=1)
    bias = ((keep - 1.0) * MASKED)[:, None, None, :]  # 0 for a real key, -1e9 for padding
    scores = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1) + bias
    mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, width)
    rows = layer.norm1(rows + attention.out_proj(mixed))
    rows = layer.norm2(rows + layer.linear2(layer.activation(layer.linear1(rows))))
    return rows.reshape(n, -1, width)


class SetEncoder(nn.Module):
    """A set of code ids [N, C] -> one vector [N, d]: a learned [SET] token + the codes' embeddings,
    one transformer layer (padding masked), then the mean over the [SET] token and the real codes.
    An empty set becomes the [SET] token's output: a learned "nothing of this type" vector.

    The [SET] token is the row after the embedding table's last: the ids, with its id put in
    front, are looked up in one table (one Gather in the exported graph where a broadcast and a
    concatenation of the token took five nodes and the shape arithmetic for them)."""

    def __init__(self, cfg: StudentConfig, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.dim, padding_idx=PAD)
        self.start = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02)
        self.encoder = _transformer(cfg, cfg.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        table = torch.cat([self.embedding.weight, self.start[0]])  # a constant of the exported graph
        ids = nn.functional.pad(ids, (1, 0), value=self.embedding.num_embeddings)  # the [SET] token's id
        x = nn.functional.embedding(ids, table, padding_idx=PAD)
        keep = (ids > PAD).to(x.dtype)  # ids are >= 0; the [SET] slot is real
        y = encode_layer(self.encoder, x, keep)
        keep = keep.unsqueeze(-1)
        return (y * keep).sum(1) / keep.sum(1)


class ProfileEncoder(nn.Module):
    """Profile tokens [B, P] -> [B, d]: the mean of the tokens' embeddings (a learned [PROFILE]
    token included, so an empty profile is defined) through a two-layer MLP."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.n_profile, cfg.dim, padding_idx=PAD)
        self.start = nn.Parameter(torch.randn(1, cfg.dim) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, cfg.dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        count = (ids > 0).to(self.start.dtype).sum(1, keepdim=True)
        total = self.embedding(ids).sum(1) + self.start  # the pad row is zero: no mask (zero_pad_rows)
        return self.mlp(total / (count + 1.0))


class NoteEncoder(nn.Module):
    """Note word ids [B, T] -> (a vector [B, width] for the current visit, logits [B, n_labels]).

    The vector: the sum of the words' embeddings divided by the square root of their count
    (padding masked; an empty note gives zeros), then a linear layer. Not a mean: it gives each
    word 1/T of the note, and training crawled (synthetic cohort, validation PR-AUC: mean 0.728
    after all 60 epochs, sum / sqrt(T) 0.752 at epoch 31). Not a plain sum (0.756, within noise):
    its scale grows with the note, and real notes are several times longer than synthetic ones.

    The logits: one weight per word and label, summed over the note's words (started at zero): the
    logistic baseline's note block inside the student, a direct path for what a word says alone
    ("penicillin" under allergies). With it, validation PR-AUC 0.752 -> 0.767, Jaccard 0.508 -> 0.517.
    """

    def __init__(self, cfg: StudentConfig, width: int):
        super().__init__()
        self.embedding = nn.Embedding(cfg.n_notes, cfg.dim, padding_idx=PAD)
        self.linear = nn.Linear(cfg.dim, width)
        self.words = nn.Embedding(cfg.n_notes, cfg.n_labels, padding_idx=PAD)
        nn.init.zeros_(self.words.weight)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = (ids > 0).to(self.embedding.weight.dtype).sum(1, keepdim=True)
        # the pad rows are zero (zero_pad_rows), so the sums need no mask
        vector = self.linear(self.embedding(ids).sum(1) / count.clamp(min=1.0).sqrt())
        return vector, self.words(ids).sum(1)


def visit_slots(visit_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, back) of left-aligned visits, both [B, V]: keep is 1.0 for a real visit and for slot 0
    (always kept as a key, so no attention row is fully masked, even for a padded row); back counts
    slots back from the current (last real) visit: 0 there, 1 for the visit before, negative past it."""
    keep = nn.functional.pad((visit_mask[:, 1:] > 0).to(visit_mask.dtype), (1, 0), value=1.0)
    slots = torch.arange(visit_mask.shape[1], device=visit_mask.device).to(visit_mask.dtype)
    return keep, keep.sum(1, keepdim=True) - 1.0 - slots


def current_visit(visit_mask: torch.Tensor) -> torch.Tensor:
    """One-hot [B, V] of the current (last real) visit of left-aligned visits; slot 0 counts as
    real, as in `VisitEncoder`. Elementwise only, so it costs little in the ONNX graph."""
    return (visit_slots(visit_mask)[1] == 0).to(visit_mask.dtype)


class VisitEncoder(nn.Module):
    """A sequence of visit vectors [B, V, w] -> the current (last real) visit's output [B, w].

    Positions count back from the current visit (current = 0), so a single visit and the current
    visit of a long history share a position; padded visits are masked as keys."""

    def __init__(self, cfg: StudentConfig, width: int):
        super().__init__()
        self.max_visits = cfg.max_visits
        self.position = nn.Embedding(cfg.max_visits, width)
        self.encoder = _transformer(cfg, width)

    def forward(self, x: torch.Tensor, visit_mask: torch.Tensor) -> torch.Tensor:
        keep, back = visit_slots(visit_mask)
        position = back.clamp(0, self.max_visits - 1).long()
        y = encode_layer(self.encoder, x + self.position(position), keep)
        return (y * (back == 0).to(y.dtype).unsqueeze(-1)).sum(1)  # the current visit's row, exactly


class BaselineLogits(nn.Module):
    """A logistic baseline's logits computed from the student's own inputs (`leader distill --prior`).

    The baseline (`leader baseline --method logistic --history previous`) is linear in binary
    features: the current visit's diagnoses and procedures, the previous visit's medications (the
    medications the student shows with the current visit), the profile tokens and the note words,
    plus a bias and a first-visit flag. Its weights sit here as one frozen table, a row per id of
    the student's vocabularies, the vocabularies one after the other (pad and unknown rows zero,
    as the baseline ignores what its columns do not hold): the logits are the bias, the flag's
    weights for a single visit, and the sum of the rows of the ids the sample shows, so one Gather
    and one ReduceSum in the exported graph. `student.prior.baseline_tables` fills the table.
    Buffers, not parameters: the optimiser never moves them, so the rest of the student learns
    only what the baseline gets wrong (as the teacher's head does, `leader teach --prior`).
    """

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        sizes = [cfg.n_diagnoses, cfg.n_procedures, cfg.n_medications, cfg.n_profile, cfg.n_notes]
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        self.reads_notes = cfg.n_notes > 0
        self.register_buffer("table", torch.zeros(sum(sizes), cfg.n_labels))
        self.register_buffer("bias", torch.zeros(cfg.n_labels))
        self.register_buffer("first_visit", torch.zeros(cfg.n_labels))

    def forward(self, diagnoses, procedures, medications, profile, notes, current) -> torch.Tensor:
        _, second, third, fourth, fifth = self.offsets  # the diagnoses' rows come first
        codes = torch.cat([diagnoses, procedures + second, medications + third], dim=-1)  # [B, V, C]
        codes = (codes * current.to(codes.dtype).unsqueeze(-1)).sum(1)  # the current visit's ids [B, C]
        parts = [codes, profile + fourth] + ([notes + fifth] if self.reads_notes else [])
        total = nn.functional.embedding(torch.cat(parts, dim=-1), self.table).sum(1)
        # a single visit is the one whose current visit is slot 0 (`current_visit`)
        return total + self.bias + current[:, :1] * self.first_visit


class Student(nn.Module):
    """LEADER's student. `forward(diagnoses, procedures, medications, profile, visit_mask, notes) ->
    logits` takes exactly the arrays of `leader.encoding.Encoder.encode` (as tensors, `INPUTS` order)."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.diag_set = SetEncoder(cfg, cfg.n_diagnoses)
        self.proc_set = SetEncoder(cfg, cfg.n_procedures)
        self.med_set = SetEncoder(cfg, cfg.n_medications)
        self.profile_encoder = ProfileEncoder(cfg)
        self.visits = VisitEncoder(cfg, 3 * d)
        self.note_encoder = NoteEncoder(cfg, 3 * d) if cfg.n_notes > 0 else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.mediator = nn.Sequential(nn.Linear(3 * d, cfg.hidden), nn.ReLU())
        self.head = nn.Linear(cfg.hidden, cfg.n_labels)
        self.kd_proj = _projection(cfg) if cfg.teacher_hidden > 0 else None
        self.prior = BaselineLogits(cfg) if cfg.prior else None
        if self.prior is not None:  # the student starts as the baseline: the note's word weights are zero too
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        # label index -> medication input-vocabulary id (set by `set_label_map`; 1 = unknown)
        self.register_buffer("label_to_med", torch.ones(cfg.n_labels, dtype=torch.long))

    def zero_pad_rows(self) -> None:
        """Set the `PAD` row of every embedding table to zero. The bags of note and profile ids sum
        without a mask (one multiply over [B, T, width] fewer each in the exported graph) because
        these rows are zero: `nn.Embedding(padding_idx=PAD)` starts them at zero and never updates
        them (zero gradient, and Adam's weight decay keeps zero at zero); `load_weights` calls this,
        so a checkpoint whose pad rows are not zero reads as it did with masks."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Embedding) and module.padding_idx == PAD:
                    module.weight[PAD].zero_()

    def set_label_map(self, med_ids) -> None:
        """Tell the model which input medication id each output label is (for the alignment loss)."""
        ids = torch.as_tensor(med_ids, dtype=torch.long)
        if ids.shape != self.label_to_med.shape:
            raise ValueError(f"label map has {tuple(ids.shape)} entries, expected {tuple(self.label_to_med.shape)}")
        self.label_to_med.copy_(ids)

    def _sets(self, encoder: SetEncoder, ids: torch.Tensor) -> torch.Tensor:
        b, v, c = ids.shape
        return encoder(ids.reshape(b * v, c)).reshape(b, v, -1)

    def encode(self, diagnoses, procedures, medications, profile, visit_mask, notes=None, labels=None) -> dict:
        """Everything the losses need: ``logits`` [B,M], ``mediator`` [B,hidden], ``patient`` [B,3d]
        (the visit encoder's output), ``profile`` [B,d]
        and, when `labels` (multi-hot [B,M]) is given, ``current_meds`` [B,d]: the current visit's
        medication set (the labels, mapped to medication ids) through the medication set encoder."""
        prof = self.profile_encoder(profile)
        diag = self._sets(self.diag_set, diagnoses)
        proc = self._sets(self.proc_set, procedures)
        meds = self._sets(self.med_set, medications)
        meds = torch.cat([meds[:, :1] + prof.unsqueeze(1), meds[:, 1:]], dim=1)  # the profile at slot 0
        visits = torch.cat([diag, proc, meds], dim=-1)
        note_logits = None
        current = current_visit(visit_mask) if self.note_encoder is not None or self.prior is not None else None
        if self.note_encoder is not None:  # the note belongs to the current admission: added to its visit
            if notes is None:
                raise ValueError("this student reads notes: pass the `notes` array of Encoder.encode")
            note, note_logits = self.note_encoder(notes)
            visits = visits + current.unsqueeze(-1) * note.unsqueeze(1)
        patient = self.visits(self.dropout(visits), visit_mask)
        mediator = self.mediator(patient)
        logits = self.head(self.dropout(mediator))
        if note_logits is not None:
            logits = logits + note_logits
        if self.prior is not None:
            logits = logits + self.prior(diagnoses, procedures, medications, profile, notes, current)
        out = {"logits": logits, "mediator": mediator, "patient": patient, "profile": prof}
        if labels is not None:
            out["current_meds"] = self.med_set(self.label_ids(labels))
        return out

    def label_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Multi-hot labels [B,M] -> medication input ids [B,K] of the set labels, padded with 0
        (K = the largest set in the batch; training only, not part of the exported graph)."""
        present = labels > 0
        order = torch.argsort(present.to(torch.int8), dim=1, descending=True, stable=True)
        k = max(1, int(present.sum(1).max()))
        order = order[:, :k]
        return self.label_to_med[order] * present.gather(1, order).long()

    def forward(self, diagnoses, procedures, medications, profile, visit_mask, notes=None) -> torch.Tensor:
        return self.encode(diagnoses, procedures, medications, profile, visit_mask, notes)["logits"]

    def project(self, out: dict) -> torch.Tensor:
        """The KD projection of `encode`'s output (its `cfg.kd_layer`) into the teacher's hidden space."""
        if self.kd_proj is None:
            raise ValueError("this student has no KD projection (teacher_hidden=0)")
        return self.kd_proj(out[self.cfg.kd_layer])


def _projection(cfg: StudentConfig) -> nn.Module:
    width = cfg.hidden if cfg.kd_layer == "mediator" else 3 * cfg.dim
    if cfg.kd_proj == "linear":
        return nn.Linear(width, cfg.teacher_hidden)
    return nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.teacher_hidden))
