"""A student started from the strongest cheap baseline: `leader distill --prior RUN_DIR`.

The student's logits become its own plus the logistic baseline's (`student.model.BaselineLogits`),
the baseline's weights copied into a frozen table over the student's vocabularies. The student's
head starts at zero, so before the first step the student *is* the baseline; the epoch before the
first is validated as the first candidate for the best weights, so a student no epoch improves
on is the baseline. The same idea as the teacher's prior (`leader teach --prior`,
`leader.teacher.prior`), here inside the network: the exported ONNX file computes the baseline
from the arrays it already reads, and the runtime needs nothing else.

Which baselines fit: ``--history previous`` (every block reads the current visit, the previous
visit's medications, the profile or the current note, which the student's inputs hold); with
notes only for a student that reads notes. A token of the baseline's columns that the student's
vocabulary lacks (a medication label fewer than --min-patients patients were given before) loses
its weight; run.json counts them (``prior.unmapped``). The student's own limits apply to the
baseline inside it: a visit's codes past --max-codes and a note's words past --max-note-tokens
are not read (notes stay under the default 256 words on both cohorts of RESULTS.md; 5 of
eICU's 1,639 samples have a code list past 40).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leader.baseline import load_logistic
from leader.encoding import Encoder
from leader.errors import LeaderError

from .model import Student

KINDS = ("diagnoses", "procedures", "medications", "profile", "notes")
"""The baseline's blocks the student can compute, in the order of `BaselineLogits`'s table."""


def baseline_tables(run_dir: str | Path, encoder: Encoder) -> tuple[dict[str, np.ndarray], int]:
    """The logistic baseline at `run_dir` as `BaselineLogits` arrays (``table`` [sum of the
    vocabulary sizes, M], ``bias`` [M], ``first_visit`` [M]) over `encoder`'s vocabularies, and how
    many of its feature columns no vocabulary id carries."""
    features, weights, bias = load_logistic(run_dir)
    other = sorted(set(features.tokens) - set(KINDS))
    if other:
        raise LeaderError(
            f"--prior {run_dir} reads {', '.join(other)}, which the student's inputs do not hold; "
            "pass a baseline trained with --history previous"
        )
    if "notes" in features.tokens and not encoder.reads_notes:
        raise LeaderError(f"--prior {run_dir} reads the notes and this student does not: drop --no-notes")
    weights, bias = weights.astype(np.float32), bias.astype(np.float32)
    vocabs = [encoder.vocabs[kind] if kind in encoder.vocabs else None for kind in KINDS]
    sizes = [len(v) if v is not None else 0 for v in vocabs]
    table = np.zeros((sum(sizes), weights.shape[1]), dtype=np.float32)
    unmapped, start = 0, 0
    for kind, vocab, size in zip(KINDS, vocabs, sizes):
        for token, column in features.index.get(kind, {}).items():
            row = vocab.index.get(token)
            if row is None:
                unmapped += 1
            else:
                table[start + row] = weights[column]
        start += size
    return {"table": table, "bias": bias + weights[0], "first_visit": weights[1]}, unmapped


def set_prior(model: Student, arrays: dict[str, np.ndarray]) -> None:
    """Copy `baseline_tables` arrays into the student's `BaselineLogits`."""
    if model.prior is None:
        raise ValueError("this student has no baseline logits (StudentConfig.prior is False)")
    with torch.no_grad():
        for name, array in arrays.items():
            buffer = getattr(model.prior, name)
            if tuple(buffer.shape) != array.shape:
                raise ValueError(f"prior {name} has shape {array.shape}, the student's {tuple(buffer.shape)}")
            buffer.copy_(torch.from_numpy(array))
