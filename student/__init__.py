"""The student stage (`leader distill`): a small multi-encoder model distilled from the teacher.

Modules: `model` (StudentConfig, Student), `losses` (BCE, feature KD, profile alignment),
`config` (DistillConfig), `distill` (the training loop, `run`, `predict_probs`), `io` (the student
folder: `load_student`). Importing this package does not import torch; the modules do.
"""

from __future__ import annotations


def load_student(folder):
    """Load a student folder -> (model in eval mode, Encoder, run record); see `leader.student.io`."""
    from .io import load_student as _load

    return _load(folder)


__all__ = ["load_student"]
