"""What a finished teacher run writes into its folder (ARCHITECTURE.md, "Run folders").

- ``adapter_config.json`` + ``adapter_model.safetensors``: the PEFT LoRA adapter;
- ``head.safetensors``: the medication head's ``weight`` [n_meds, hidden] and ``bias`` [n_meds], and
  the ``center`` and ``scale`` [hidden] that standardise its input;
- ``teacher.json``: base model (spec, name, sha256), quantisation, prompt settings, label list,
  target, decision threshold, LoRA settings, how training went, versions;
- ``metrics.json`` ({"val", "test"} tables of `leader.evaluate.score`) and ``run.json``.

Besides them, `leader.teacher.train` keeps ``metrics.jsonl`` (the training log) and
``checkpoint/`` (resume state), and, while the run is under way, ``config.json`` (the resolved
TeachConfig, what --resume compares against); once run.json holds the same options, it goes.
Every file is replaced atomically; run.json comes last and marks the run finished.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from leader.io import read_json, write_text
from leader.runinfo import versions, write_run
from leader.safejson import loads

from .infer import TEACHER_FORMAT, gather_logits, load_teacher
from .prompt import encode
from .scores import cached_split_logits, print_test_line, run_name, write_scores

TEACHER_FILES = ("adapter_config.json", "adapter_model.safetensors", "head.safetensors", "teacher.json")


def write_teacher(cfg, inner, backbone, dataset, settings, precision, state, prior=None) -> None:
    """Adapter, head and teacher.json into --out (each file replaced atomically)."""
    tmp = Path(tempfile.mkdtemp(prefix=".teacher-", dir=cfg.out))
    try:
        inner.backbone.save_pretrained(tmp, safe_serialization=True)
        save_file(inner.head_state(), tmp / "head.safetensors")
        info = {
            "format": TEACHER_FORMAT,
            "base_model": {"spec": backbone.spec, "name": backbone.name, "sha256": backbone.sha256},
            "quantize": cfg.quantize,
            "prompt": {"max_tokens": settings.max_tokens, "max_history": settings.max_history, "notes": settings.notes},
            "medications": list(dataset.medications),
            "target": cfg.target,
            "threshold": None,
            "pooling": cfg.pooling,
            "prior": prior.record() if prior is not None else None,
            "hidden_size": int(inner.head.in_features),
            "lora": {
                "r": cfg.lora_r,
                "alpha": cfg.lora_alpha,
                "dropout": cfg.lora_dropout,
                "target_modules": list(cfg.target_modules),
            },
            "training": {
                "precision": precision,
                "compiled": inner.compiled,
                "steps": state.step,
                "best_step": state.best_step,
                "best_val_pr_auc": state.best_score,
                "stopped": state.stopped,
                "tokens": state.tokens,
                "seconds": round(state.seconds, 1),
                "processes": state.world,
            },
            "versions": versions(),
        }
        (tmp / "teacher.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        for name in TEACHER_FILES:
            os.replace(tmp / name, cfg.out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def score_and_finish(cfg, accelerator, dataset, splits, backbone, prior=None) -> None:
    """Reload the written teacher as `leader evaluate` does, tune the threshold, write metrics and run.json.

    With `cache_features` (one process, the dataset's own splits) the reload computes the feature
    cache of every sample, and validation and test are scored from its logits: the pass distillation
    needs anyway, instead of a second one over validation and test.
    """
    if cfg.cache_features and accelerator.num_processes == 1 and cfg.external_data is None:
        logits = _cached_logits(cfg, dataset, splits, prior)
    else:
        if cfg.refit_head:
            print(
                "note: the head is not refitted: that needs the feature cache (--cache-features, one process, not --split external)",
                file=sys.stderr,
            )
        teacher = load_teacher(cfg.out)
        logits = {}
        for name in ("val", "test"):
            toks = encode(splits[name], dataset.titles, teacher.settings, teacher.tokenizer)
            logits[name] = gather_logits(
                accelerator,
                teacher.model,
                toks,
                teacher.tokenizer.pad_token_id,
                cfg.eval_batch_size,
                teacher.device,
                teacher.autocast,
                desc=f"score {name}",
                progress=cfg.progress,
            )
            if teacher.prior is not None:
                logits[name] = logits[name] + teacher.prior.logits(splits[name])
    if not accelerator.is_main_process:
        return
    thresholds, metrics = write_scores(cfg.out, dataset, splits, logits)
    split = {"how": cfg.split, "seed": cfg.seed, "target": cfg.target}
    refitted = bool(
        (read_json(cfg.out / "teacher.json", "teacher.json").get("training") or {}).get("refit", {}).get("kept")
    )
    extra = {"prior": prior.record()} if prior is not None else {}
    name = run_name(backbone.name, prior, refitted)
    write_run(cfg.out, "teacher", name, dataset, split, thresholds, cfg.to_dict(), **extra)
    (cfg.out / "config.json").unlink(missing_ok=True)  # run.json holds the resolved options now: one copy
    print_test_line(cfg.out, metrics, thresholds)


def _cached_logits(cfg, dataset, splits, prior=None) -> dict[str, np.ndarray]:
    """Validation and test logits from the teacher's feature cache (written here when missing),
    after the head is refitted on it (`leader.teacher.refit`) unless --no-refit-head."""
    from .features import ensure_features
    from .refit import refit_head

    ensure_features(cfg.out, dataset, batch_size=cfg.eval_batch_size, progress=cfg.progress, compile=cfg.compile)
    if cfg.refit_head:
        refit_head(cfg.out, dataset, splits, prior)
    return cached_split_logits(cfg.out, dataset, splits)


def trim_log(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines written after the checkpoint being resumed."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in kept))
