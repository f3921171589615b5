"""The resume checkpoint of a teacher run: `<out>/checkpoint/`, kept apart from the final weights.

- ``trainable.safetensors``: the LoRA weights and the head at the last checkpointed step;
- ``best.safetensors``: the same tensors at the best validation PR-AUC so far (absent before the
  first evaluation);
- ``optimizer.pt``: the AdamW state dict (``torch.save``; read back with ``weights_only=True``);
- ``rng.safetensors``: every process's torch RNG state (dropout), one row per process;
- ``state.json``: step, planned steps, the scheduler state, the best score and step, the
  evaluations since the best one, tokens seen, training seconds and the number of processes.

The whole folder is replaced atomically, so a crash while checkpointing keeps the previous one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leader.errors import LeaderError
from leader.io import atomic_dir, read_json

CHECKPOINT = "checkpoint"


@dataclass
class LoopState:
    """Where the training loop stands; everything here goes into state.json."""

    step: int = 0
    """Optimizer steps done."""
    total_steps: int = 0
    """Steps planned (fitted to --max-minutes after the calibration steps and after each validation)."""
    steps_cap: int = 0
    """Steps --epochs or --max-steps allow: a re-plan never goes past them (0: a checkpoint from before it)."""
    decay_since: int = 0
    """Step where a re-plan moved total_steps (0: never); the rate decays linearly from there."""
    decay_start: float = 1.0
    """The schedule's factor at decay_since."""
    eval_every: int = 1
    """Steps between validations."""
    planned: bool = False
    """True once the time budget has been applied to total_steps."""
    best_score: float = -1.0
    """Best validation PR-AUC so far (-1: none yet)."""
    best_step: int = 0
    evals_since_best: int = 0
    tokens: int = 0
    """Real (non-pad) prompt tokens trained on, all processes."""
    seconds: float = 0.0
    """Seconds spent in the training loop (steps and validations), over all sessions."""
    world: int = 1
    """Number of processes (the batch order depends on it)."""
    dataset_sha256: str = ""
    """The cohort trained on (a resumed run must see the same data)."""
    prior_sha256: str = ""
    """sha256 of the --prior baseline's model.npz ("" without one; a resumed run must add the same logits)."""
    scheduler: dict = field(default_factory=dict)
    stopped: str = ""
    """Why the loop ended: "steps", "early stopping" or "time budget"."""


def save_checkpoint(
    out: Path, state: LoopState, trainable: dict, best: dict | None, optimizer_state: dict, rng
) -> None:
    """Replace `<out>/checkpoint/` (main process only)."""
    import torch
    from safetensors.torch import save_file

    with atomic_dir(Path(out) / CHECKPOINT, overwrite=True, marker="state.json") as tmp:
        save_file(trainable, tmp / "trainable.safetensors")
        if best is not None:
            save_file(best, tmp / "best.safetensors")
        torch.save(optimizer_state, tmp / "optimizer.pt")
        save_file({"cpu": rng.contiguous()}, tmp / "rng.safetensors")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1) + "\n", encoding="utf-8")


def load_checkpoint(out: Path):
    """(LoopState, trainable, best or None, optimizer state, rng [world, n]) or None when absent."""
    import torch
    from safetensors.torch import load_file

    folder = Path(out) / CHECKPOINT
    if not (folder / "state.json").is_file():
        return None
    try:
        record = read_json(folder / "state.json", "checkpoint state")
        state = LoopState(**record)
        trainable = load_file(folder / "trainable.safetensors")
        best = load_file(folder / "best.safetensors") if (folder / "best.safetensors").is_file() else None
        optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        rng = load_file(folder / "rng.safetensors")["cpu"]
    except (TypeError, OSError, RuntimeError, KeyError, ValueError) as err:
        raise LeaderError(
            f"the checkpoint in {folder} is unreadable ({type(err).__name__}); remove it to start over"
        ) from None
    return state, trainable, best, optimizer, rng
