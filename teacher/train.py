"""Training the teacher: one loop for a CPU, one GPU, or several processes under Accelerate.

    leader teach --data runs/data/synth --out runs/teacher                 # SmolLM2-135M, bf16 on CPU
    leader teach --data D --out runs/teacher --max-minutes 20              # fit the schedule to a budget
    leader teach --data D --out runs/teacher --resume                      # continue after a crash
    accelerate launch --multi_gpu --num_processes 2 -m leader teach ...    # 2 processes (GPUs, or gloo on CPU)

(Accelerate 1.15's `accelerate launch --cpu --num_processes 2` starts a single process unless
mpirun is set up; `--multi_gpu` starts two through torchrun, which on a machine without a GPU
leader joins over gloo on the CPU. `torchrun --nproc_per_node 2 -m leader teach ...` also works.)

Each optimizer step takes `grad_accum` micro-batches per process from one global, length-grouped
batch order (a pure function of the seed, the step and the number of processes), so a resumed run
replays exactly the batches it would have seen. A micro-batch over MICRO_BATCH_SLOTS token slots
runs forward and backward in parts whose gradients add up to its own: the memory of the
activations follows the part, not --batch-size. Validation every `eval_every` steps (PR-AUC,
Jaccard at the validation-tuned threshold); the best PR-AUC's weights are kept; training stops
after `patience` evaluations without improvement, at the planned step, or at the time budget.
Then the best weights are written, reloaded the way `leader evaluate` loads them, and scored:
the threshold is tuned on validation and metrics.json holds validation and test.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast, set_seed
from tqdm import tqdm

from leader.cohort import load_dataset
from leader.errors import LeaderError
from leader.io import lock_out, read_json, write_json
from leader.metrics import jaccard_samples, labels_matrix, pr_auc_samples, tune_threshold
from leader.samples import split_samples

from .backbone import COMPILED, bf16_supported, compile_layers, load_backbone, resolve, short_prompt_attention
from .checkpoint import CHECKPOINT, LoopState, load_checkpoint, save_checkpoint
from .config import TeachConfig
from .folder import score_and_finish, trim_log, write_teacher
from .infer import forward, gather_logits, sigmoid
from .model import (
    TeacherModel,
    add_lora,
    calibrate_head,
    collate,
    length_batches,
    load_trainable_state,
    micro_batches,
    standardise_head,
    trainable_state,
)
from .prior import load_prior
from .prompt import PromptSettings, encode

EVALS_PER_RUN = 3  # validations in an --eval-every 0 run: a 1-epoch run rarely needs more, and each costs steps
LOG_EVERY = 10  # steps between training-loss lines in metrics.jsonl
CALIBRATE_STEPS = 8  # steps timed before the schedule is fitted to --max-minutes
# Token slots (rows x longest prompt) per forward pass in training with compiled blocks; a larger
# batch runs in parts, and eager blocks take half as many (`training_slots`). Eager SmolLM2-135M
# keeps ~1.4 MB of activations a token for the backward pass, 2.9 GB for a whole 8 x 256 batch
# (peak RSS of bf16 steps of 8 x 256 in a fresh process, AMD EPYC, 2 threads: 1,024 slots 2.71 GB
# at 518 tokens/s, 512 slots 1.74 GB at 496, 256 slots 1.33 GB at 378); compiled blocks keep
# less (`leader teach --max-steps 4`: 1,024 slots 1.73 GB, 512 slots 1.55 GB) and run 6% faster
# at 1,024 than at 512 (six alternating rounds). Prompts longer than this train with activation
# checkpointing (`build_model`).
MICRO_BATCH_SLOTS = 1024


def resolve_precision(precision: str, quantize: str | None) -> str:
    """fp32, bf16 or fp16 for this machine (`auto`: bf16 where it is fast, else fp32)."""
    if precision == "fp16" and not torch.cuda.is_available():
        raise LeaderError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on a CPU")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


def _accelerator(precision: str) -> Accelerator:
    """The Accelerator of this run.

    Without a GPU it is told `cpu=True`: that is what makes Accelerate join processes started
    by a launcher (`accelerate launch --multi_gpu --num_processes 2`, `torchrun`) over gloo on
    the CPU; otherwise each would train alone. A single process may run several `leader teach`
    (tests, notebooks) with different precisions, so its state is reset first; under a launcher
    (WORLD_SIZE > 1) the state belongs to the launch and is left alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())


def lr_factor(step: int, total: int, warmup: int, since: int = 0, start: float = 1.0) -> float:
    """Linear warmup over `warmup` steps, then linear decay to 0 at `total`; run by torch's
    `LambdaLR`. Not `transformers.get_linear_schedule_with_warmup` (its warmup starts at lr 0, so
    the first step would not train) nor a `SequentialLR` of `LinearLR`s: both fix `total` when
    built, and --max-minutes moves it after the calibration steps (`LoopState.total_steps`).

    A run re-planned after warmup (`_Loop._replan`) decays from the factor `start` it had at step
    `since` to 0 at the new `total`, so the rate never jumps."""
    if since:
        return max(0.0, start * (total - step) / max(1, total - since))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def _lr_factor(state: LoopState, step: int, warmup_share: float) -> float:
    """The schedule's factor at `step` for the plan `state` holds now."""
    return lr_factor(
        step, state.total_steps, int(warmup_share * state.total_steps), state.decay_since, state.decay_start
    )


def _prepare_folder(cfg: TeachConfig, dataset_sha: str) -> bool:
    """Check --out against --resume; return True when the run is already finished."""
    out = cfg.out
    if not cfg.resume:
        if out.exists():
            raise LeaderError(f"{out} already exists: pass --resume to continue that run, or choose another --out")
        return False
    if not out.is_dir():
        raise LeaderError(f"nothing to resume: {out} does not exist; drop --resume to start a new run")
    # the resolved options: config.json while the run is under way, run.json's copy once finished
    if (out / "config.json").is_file():
        recorded = read_json(out / "config.json", "teacher config.json")
    elif (out / "run.json").is_file():
        recorded = read_json(out / "run.json", "teacher run.json").get("config") or {}
    else:
        raise LeaderError(f"{out} is not a teacher run (no config.json or run.json); choose another --out")
    old = TeachConfig.from_dict(recorded)
    changed = cfg.differences(old)
    if changed:
        flags = ", ".join("--" + name.replace("_", "-") for name in changed)
        raise LeaderError(f"cannot resume {out} with other options ({flags} differ); use the options of the first run")
    run_json = out / "run.json"
    if run_json.is_file():
        if read_json(run_json, "teacher run.json").get("dataset", {}).get("sha256") != dataset_sha:
            raise LeaderError(f"{out} was trained on another dataset than {cfg.data}")
        return True
    return False


def run(cfg: TeachConfig) -> Path:
    """Train a teacher into `cfg.out` and return the folder (see the module docstring)."""
    first = os.environ.get("RANK", "0") == "0"  # under `accelerate launch` process 0 locks --out for all
    with lock_out(cfg.out) if first else contextlib.nullcontext():
        return _run(cfg)


def _run(cfg: TeachConfig) -> Path:
    dataset = load_dataset(cfg.data)
    external = load_dataset(cfg.external_data) if cfg.external_data is not None else None
    splits = split_samples(dataset, cfg.split, cfg.seed, cfg.target, external)
    for name in ("train", "val"):
        if not splits[name]:
            raise LeaderError(f"the {name} split of {cfg.data} is empty; use a larger dataset or another --split")
    if _prepare_folder(cfg, dataset.sha256):
        print(f"{cfg.out} is finished already; nothing to do", file=sys.stderr)
        return cfg.out
    split = {"how": cfg.split, "seed": cfg.seed, "target": cfg.target}
    if cfg.external_data is not None:
        split["external"] = str(cfg.external_data)
    prior = load_prior(cfg.prior, dataset, split) if cfg.prior is not None else None
    precision = resolve_precision(cfg.precision, cfg.quantize)
    accelerator = _accelerator(precision)
    world, main = accelerator.num_processes, accelerator.is_main_process
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif world > 1 and accelerator.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    with accelerator.main_process_first():
        backbone = resolve(cfg.base_model)
    set_seed(cfg.seed, device_specific=True)
    model, tokenizer = build_model(cfg, backbone, precision, len(dataset.medications))
    settings = PromptSettings(cfg.max_tokens, cfg.max_history, cfg.notes)
    watched = _seeded_subset(len(splits["val"]), cfg.eval_samples, cfg.seed)
    chosen = {"train": splits["train"], "val": [splits["val"][i] for i in watched]}
    tokens = {name: encode(chosen[name], dataset.titles, settings, tokenizer) for name in chosen}
    labels = {name: labels_matrix(chosen[name], dataset.medications) for name in chosen}
    # the baseline's logits of every training and watched validation sample, computed once
    offsets = {name: prior.logits(chosen[name]) for name in chosen} if prior is not None else None
    head_params = list(model.head.parameters())
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [{"params": lora_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)
    n_batches = math.ceil(len(tokens["train"]) / cfg.batch_size)
    planned = cfg.max_steps or max(1, math.ceil(cfg.epochs * n_batches / (world * cfg.grad_accum)))
    state = LoopState(
        total_steps=planned,
        steps_cap=planned,
        eval_every=cfg.eval_every or max(1, planned // EVALS_PER_RUN),
        world=world,
        dataset_sha256=dataset.sha256,
        prior_sha256=prior.sha256 if prior is not None else "",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(state, s, cfg.warmup))
    # every error a user can cause has happened by now: the run folder may appear
    created = not cfg.out.exists()
    accelerator.wait_for_everyone()
    if main and created:
        cfg.out.mkdir(parents=True)
        write_json(cfg.out / "config.json", cfg.to_dict())
    accelerator.wait_for_everyone()
    try:
        best = _restore(cfg, accelerator, inner, optimizer, scheduler, state) if cfg.resume else None
        if state.step == 0 and cfg.calibration_samples:
            _calibrate(cfg, accelerator, inner, tokens["train"], labels["train"], tokenizer.pad_token_id, state, prior)
        loop = _Loop(
            cfg, accelerator, model, inner, optimizer, scheduler, state, tokens, labels, tokenizer.pad_token_id, best
        )
        loop.offsets = offsets  # the prior's logits, added to the model's in the loss and validations
        loop.train()
    except BaseException:
        if main and created and not (cfg.out / CHECKPOINT).exists():
            shutil.rmtree(cfg.out, ignore_errors=True)  # nothing worth resuming: leave nothing behind
        raise
    best = loop.best
    del loop, optimizer, scheduler, model
    if best is not None:
        load_trainable_state(inner, best)
    if main:
        write_teacher(cfg, inner, backbone, dataset, settings, precision, state, prior)
    del inner
    accelerator.free_memory()  # the Accelerator holds the trained model too: free it before the reload
    gc.collect()
    return_freed_memory()
    accelerator.wait_for_everyone()
    score_and_finish(cfg, accelerator, dataset, splits, backbone, prior)
    accelerator.end_training()
    return cfg.out


def return_freed_memory() -> None:
    """Hand the heap freed by training back to the OS. glibc keeps freed blocks for reuse, so
    without this the scoring model loaded next stacked on the training peak (`leader teach
    --max-steps 4`, 8 x 256: peak RSS 2.39 GB; with this 1.78 GB, the training steps' own). No-op
    off glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _seeded_subset(n: int, k: int, seed: int) -> list[int]:
    """Sorted indices of a seeded sample of k out of n (all of them when k is 0 or at least n):
    the validation samples scored during training, the samples that calibrate the head."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def training_slots(model: TeacherModel) -> int:
    """Token slots per forward pass in training: `MICRO_BATCH_SLOTS` with compiled blocks, half
    as many eager, whose backward pass keeps more activations (the memory figures above)."""
    return MICRO_BATCH_SLOTS if model.compiled == COMPILED else MICRO_BATCH_SLOTS // 2


def build_model(cfg: TeachConfig, backbone, precision: str, n_labels: int) -> tuple[TeacherModel, object]:
    """Backbone (frozen, in the autocast dtype) + LoRA adapters + the medication head, as `cfg`
    and `precision` (fp32, bf16, fp16) say, with activation checkpointing when asked
    (--checkpointing) or when --max-tokens is over MICRO_BATCH_SLOTS, its transformer blocks
    compiled (--compile; `TeacherModel.compiled` says what was done); also what the teacher
    benchmark times."""
    # autocast would cast the frozen weights on every forward anyway (ARCHITECTURE.md: 718 vs 649
    # tokens/s); the LoRA weights and the head stay fp32
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if cfg.quantize is None else None
    base, tokenizer = load_backbone(
        backbone, cfg.quantize, dtype=low, attention=short_prompt_attention(cfg.max_tokens, training=True)
    )
    checkpointed = cfg.checkpointing or 0 < MICRO_BATCH_SLOTS < cfg.max_tokens
    if checkpointed:
        # one prompt alone is over the token budget of a forward pass: keep only each layer's
        # input and recompute the layer in the backward pass (a third more compute, a small
        # fraction of the memory); non-reentrant, so dropout masks are replayed exactly
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for module in base.modules():
        # bitsandbytes repacks 4-bit weights for a faster CPU kernel on the first no-grad forward
        # (our validation) and that kernel has no backward: training after it would get wrong
        # gradients. Keep the trainable layout; `leader.teacher.infer` may use the fast one.
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    lora = add_lora(base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules)
    model = TeacherModel(lora, n_labels, cfg.pooling)
    if not cfg.compile:
        model.compiled = "off: --no-compile"
    elif cfg.quantize is not None or checkpointed:
        model.compiled = "off: not with --quantize or activation checkpointing"
    else:
        model.compiled = compile_layers(lora)
        if model.compiled != COMPILED:
            print(f"note: the teacher trains eager ({model.compiled.removeprefix('off: ')})", file=sys.stderr)
    return model, tokenizer


def _calibrate(cfg, accelerator, inner, tokens, labels, pad_id: int, state: LoopState, prior=None) -> None:
    """Run a seeded subset of the training prompts through the untuned model once and calibrate
    the head on their pooled states (`leader.teacher.model.calibrate_head`; with a prior only the
    input statistics, the head stays at zero: `standardise_head`). Every process does the same,
    so they agree; the time counts against --max-minutes."""
    start = time.perf_counter()
    chosen = _seeded_subset(len(tokens), cfg.calibration_samples, cfg.seed)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)
    order, pooled, _ = forward(
        inner,
        [tokens[i] for i in chosen],
        pad_id,
        cfg.eval_batch_size,
        accelerator.device,
        autocast,
        progress=cfg.progress and accelerator.is_main_process,
        desc="calibrate head",
    )
    rows = np.asarray(chosen)[order]
    if prior is not None:
        standardise_head(inner, torch.from_numpy(pooled))
        probe_loss = None
    else:
        probe_loss = calibrate_head(inner, torch.from_numpy(pooled), torch.from_numpy(labels[rows]))
    seconds = time.perf_counter() - start
    state.seconds += seconds
    if accelerator.is_main_process:
        _append_log(
            cfg.out,
            {
                "step": 0,
                "event": "head calibration",
                "samples": len(chosen),
                "probe_loss": probe_loss,
                "elapsed_s": round(state.seconds, 1),
            },
        )


def _append_log(out: Path, record: dict) -> None:
    """One line of the run's training log, metrics.jsonl."""
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _restore(cfg, accelerator, inner, optimizer, scheduler, state: LoopState) -> dict | None:
    """Load the checkpoint of a resumed run into the model, optimizer, scheduler, RNG and `state`;
    return the best weights so far (None before the first validation or without a checkpoint)."""
    loaded = load_checkpoint(cfg.out)
    if loaded is None:
        return None
    saved, trainable, best, optim_state, rng = loaded
    if saved.world != state.world:
        raise LeaderError(f"{cfg.out} was trained with {saved.world} processes; resume it with the same number")
    if saved.dataset_sha256 != state.dataset_sha256:
        raise LeaderError(f"{cfg.out} was trained on another dataset than {cfg.data}; resume with the original --data")
    if saved.prior_sha256 != state.prior_sha256:
        raise LeaderError(f"the --prior baseline changed since {cfg.out} started; restore it, or start a new run")
    state.__dict__.update(saved.__dict__)  # in place: the scheduler's lambda reads `state`
    load_trainable_state(inner, trainable)
    optimizer.load_state_dict(optim_state)
    scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(rng[accelerator.process_index].clone())
    if accelerator.is_main_process:
        trim_log(cfg.out / "metrics.jsonl", state.step)
        print(f"resuming {cfg.out} at step {state.step} of {state.total_steps}", file=sys.stderr)
    return best


class _Loop:
    """The training loop's moving parts (kept together so `run` reads top to bottom)."""

    def __init__(self, cfg, accelerator, model, inner, optimizer, scheduler, state, tokens, labels, pad_id, best):
        self.cfg, self.acc, self.model, self.inner = cfg, accelerator, model, inner
        self.optimizer, self.scheduler, self.state = optimizer, scheduler, state
        self.tokens, self.labels, self.pad_id, self.best = tokens, labels, pad_id, best
        self.lengths = [len(t) for t in tokens["train"]]
        self.slots = training_slots(inner)
        self.n_batches = math.ceil(len(self.lengths) / cfg.batch_size)
        self._epoch, self._batches = -1, []
        self.eval_seconds = 0.0  # what a validation costs: estimated with the budget, then the last one's time
        self.step_seconds, self.step_tokens = 0.0, 0  # this session's timed steps (not the first): the measured speed
        self.offsets = None  # {"train": [N, M], "val": [n, M]}: the --prior baseline's logits, or None

    def batch(self, index: int) -> list[int]:
        """Global batch number `index` of the endless, epoch-by-epoch batch order."""
        epoch, pos = divmod(index, self.n_batches)
        if epoch != self._epoch:
            self._epoch, self._batches = (
                epoch,
                length_batches(self.lengths, self.cfg.batch_size, self.cfg.seed * 100003 + epoch),
            )
        return self._batches[pos]

    def train(self) -> None:
        cfg, acc, state = self.cfg, self.acc, self.state
        if state.stopped:  # resumed after the loop had ended (a crash while scoring): go straight on
            return
        if self.offsets is not None and state.step == 0 and state.best_score < 0:
            # with a prior the untrained teacher is the baseline: it is the first candidate, so the
            # teacher kept is never one that validates worse than the baseline it started from
            started = time.perf_counter()
            self._evaluate()
            state.seconds += time.perf_counter() - started
        world, rank = acc.num_processes, acc.process_index
        params = [p for p in self.model.parameters() if p.requires_grad]
        bar = tqdm(
            total=state.total_steps,
            initial=state.step,
            desc="teach",
            file=sys.stderr,
            disable=not (cfg.progress and acc.is_main_process),
            dynamic_ncols=True,
        )
        loss_sum, loss_n, tokens_window, window_start = 0.0, 0, 0, time.perf_counter()
        session_start, session_steps = time.perf_counter(), 0
        last_end = session_start  # where the last step (or validation) ended: a step's time is all of the loop's since
        seconds_before = state.seconds
        self.model.train()
        while state.step < state.total_steps:
            step_start = time.perf_counter()
            real = torch.zeros(1, device=acc.device)
            for micro in range(cfg.grad_accum):
                batch = self.batch((state.step * cfg.grad_accum + micro) * world + rank)
                loss_sum += float(self._micro(batch, sync=micro == cfg.grad_accum - 1))
                loss_n += 1
                real += sum(self.lengths[i] for i in batch)
            acc.clip_grad_norm_(params, 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            step_tokens = int(acc.reduce(real, "sum").item()) if world > 1 else int(real.item())
            state.tokens += step_tokens
            tokens_window += step_tokens
            now = time.perf_counter()
            state.seconds = seconds_before + now - session_start
            rate = tokens_window / max(now - window_start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(loss_n, 1e-9):.4f}", tok_s=f"{rate:.0f}")
            session_steps += 1
            if session_steps > 1:  # the first step of a session pays for warm-up: not timed
                self.step_seconds += now - last_end
                self.step_tokens += step_tokens
            last_end = now
            if cfg.max_minutes and not state.planned and session_steps == 1 + CALIBRATE_STEPS:
                self._fit_budget(self.step_seconds / max(self.step_tokens, 1))
                bar.total = state.total_steps
            over_budget = self._over_budget(now - step_start)
            evaluate = state.step % state.eval_every == 0 or state.step >= state.total_steps or over_budget
            # a training line also before each validation, so windows restart where checkpoints do
            if state.step % LOG_EVERY == 0 or evaluate:
                mean_loss = torch.tensor([loss_sum / max(loss_n, 1)], device=acc.device)
                mean_loss = acc.reduce(mean_loss, "mean") if world > 1 else mean_loss
                self._log(
                    {
                        "step": state.step,
                        "lr": self.scheduler.get_last_lr()[0],
                        "train_loss": float(mean_loss.item()),
                        "tokens_per_s": rate,
                        "elapsed_s": round(state.seconds, 1),
                    }
                )
                loss_sum, loss_n, tokens_window, window_start = 0.0, 0, 0, time.perf_counter()
            if evaluate:
                started = time.perf_counter()
                self._evaluate()
                self.eval_seconds = time.perf_counter() - started
                state.seconds = seconds_before + time.perf_counter() - session_start
                if not over_budget:  # the loop stops after this validation: nothing left to plan
                    self._replan()
                    bar.total = state.total_steps
                self._checkpoint()
                last_end = time.perf_counter()
                if state.evals_since_best >= cfg.patience:
                    state.stopped = "early stopping"
                    break
            if over_budget:
                state.stopped = "time budget"
                break
        else:
            state.stopped = "steps"
        bar.close()
        self._checkpoint()

    def _micro(self, batch: list[int], sync: bool):
        """Forward and backward of one micro-batch, in parts of at most `training_slots` token
        slots (`micro_batches`): each part's mean loss is weighted by its share of the rows, so
        the gradients add up to the whole micro-batch's. Returns its mean loss."""
        parts = micro_batches(batch, self.lengths, self.slots)
        total = torch.zeros((), device=self.acc.device)
        for k, part in enumerate(parts):
            ids, mask = collate([self.tokens["train"][i] for i in part], self.pad_id)
            y = torch.from_numpy(self.labels["train"][part]).to(self.acc.device)
            last = sync and k == len(parts) - 1  # processes exchange gradients once, after the last part
            with contextlib.nullcontext() if last else self.acc.no_sync(self.model):
                with self.acc.autocast():
                    logits, _ = self.model(ids.to(self.acc.device), mask.to(self.acc.device))
                logits = logits.float()
                if self.offsets is not None:
                    logits = logits + torch.from_numpy(self.offsets["train"][part]).to(logits.device)
                share = len(part) / len(batch)
                loss = share * torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
                self.acc.backward(loss / self.cfg.grad_accum)
            total += loss.detach()
        return total

    def _budget_left(self) -> float:
        return self.cfg.max_minutes * 60.0 - self.state.seconds

    def _over_budget(self, step_seconds: float) -> bool:
        """True when the time budget cannot take another step of `step_seconds` and the last
        validation; the main process decides for everyone."""
        if self.cfg.max_minutes is None:
            return False
        over = self._budget_left() <= step_seconds + self.eval_seconds
        if self.acc.num_processes > 1:
            over = bool(broadcast(torch.tensor([int(over)], device=self.acc.device)).item())
        return over

    def _seconds_per_step(self, seconds_per_token: float) -> float:
        """A step's predicted cost: length-grouped batches differ in length several-fold, so it
        comes from the mean tokens of a step rather than from the steps timed."""
        mean_tokens = sum(self.lengths) / self.n_batches * self.cfg.grad_accum * self.acc.num_processes
        return seconds_per_token * mean_tokens

    def _agree(self, value: int) -> int:
        """The main process's `value`, on every process."""
        if self.acc.num_processes == 1:
            return value
        return int(broadcast(torch.tensor([value], dtype=torch.int64, device=self.acc.device)).item())

    def _fit_budget(self, seconds_per_token: float) -> None:
        """Shrink the planned steps so steps plus validations fit the time budget (same on every process).

        `seconds_per_token` was timed over a few steps (all processes' real tokens).
        """
        state = self.state
        seconds_per_step = self._seconds_per_step(seconds_per_token)
        # a validation pass costs about a third of training on the same tokens (forward only)
        eval_seconds = seconds_per_token * sum(len(t) for t in self.tokens["val"]) / 3.0
        self.eval_seconds = eval_seconds
        left = self._budget_left() - EVALS_PER_RUN * eval_seconds
        state.total_steps = self._agree(min(state.total_steps, state.step + max(1, int(left / seconds_per_step))))
        if not self.cfg.eval_every:
            state.eval_every = max(1, state.total_steps // EVALS_PER_RUN)
        state.planned = True
        self._log(
            {
                "step": state.step,
                "event": "time budget",
                "seconds_per_step": seconds_per_step,
                "total_steps": state.total_steps,
            }
        )

    def _replan(self) -> None:
        """After a validation of a --max-minutes run: fit the steps left to the budget left, at the
        speed measured over this session's steps and the last validation's cost.

        The few calibration steps misjudge a long run (the machine's speed drifts, compiled blocks
        meet new shapes, batches differ in length), and a plan too long ends the run on the clock
        before the learning rate has decayed; a plan too short wastes the budget. The rate decays
        on from where it is (`lr_factor`'s `since`), never past the steps --epochs allows.
        """
        state = self.state
        if not (self.cfg.max_minutes and state.planned and self.step_tokens) or state.step >= state.total_steps:
            return
        seconds_per_step = self._seconds_per_step(self.step_seconds / self.step_tokens)
        per_step = seconds_per_step + self.eval_seconds / state.eval_every
        fit = state.step + max(1, int((self._budget_left() - self.eval_seconds) / per_step))
        fit = self._agree(min(state.steps_cap or state.total_steps, fit))
        if fit == state.total_steps:
            return
        if state.decay_since or state.step >= int(self.cfg.warmup * state.total_steps):
            # past warmup: decay on from the rate of now (during warmup the plan just moves its end)
            state.decay_since, state.decay_start = state.step, _lr_factor(state, state.step, self.cfg.warmup)
        state.total_steps = fit
        self._log({"step": state.step, "event": "re-planned", "seconds_per_step": seconds_per_step, "total_steps": fit})

    def _evaluate(self) -> None:
        state = self.state
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.acc.mixed_precision)
        logits = gather_logits(
            self.acc,
            self.inner,
            self.tokens["val"],
            self.pad_id,
            self.cfg.eval_batch_size,
            self.acc.device,
            autocast,
            desc="validate",
            progress=self.cfg.progress,
        )
        if self.offsets is not None:
            logits = logits + self.offsets["val"]
        probs = sigmoid(logits)
        y = self.labels["val"]
        score = pr_auc_samples(y, probs) or 0.0
        threshold = tune_threshold(y, probs)
        record = {
            "step": state.step,
            "split": "val",
            "val_pr_auc": score,
            "val_jaccard": jaccard_samples(y, probs >= threshold),
            "threshold": threshold,
            "val_loss": float(np.mean(np.logaddexp(0, logits) - y * logits)),
            "elapsed_s": round(state.seconds, 1),
        }
        if score > state.best_score:
            state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
            self.best = trainable_state(self.inner)
            record["best"] = True
        else:
            state.evals_since_best += 1
        self._log(record)

    def _checkpoint(self) -> None:
        rng = torch.get_rng_state().unsqueeze(0)
        if self.acc.num_processes > 1:
            rng = self.acc.gather(rng.to(self.acc.device)).cpu()
        self.state.scheduler = self.scheduler.state_dict()
        if self.acc.is_main_process:
            save_checkpoint(
                self.cfg.out, self.state, trainable_state(self.inner), self.best, self.optimizer.state_dict(), rng
            )
        self.acc.wait_for_everyone()

    def _log(self, record: dict) -> None:
        if self.acc.is_main_process:
            _append_log(self.cfg.out, record)
