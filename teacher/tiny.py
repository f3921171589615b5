"""A tiny random Llama-style backbone with a word-level tokenizer, for tests and smoke runs.

    folder = make_tiny_backbone(tmp / "tiny", texts)     # then --base-model <folder>

Built from a config (1 layer, hidden 16) and a tokenizer fitted on `texts`, so nothing is ever
downloaded. Its predictions are meaningless; it exercises every code path in seconds.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ("<unk>", "<pad>", "<s>", "</s>")


def make_tiny_backbone(out: str | Path, texts, hidden: int = 16, layers: int = 1, seed: int = 0) -> Path:
    """Save a random LlamaModel and a word-level tokenizer (fitted on `texts`) into `out`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    out = Path(out)
    splitter = pre_tokenizers.Whitespace()
    words = sorted({w for text in texts for w, _ in splitter.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
    )
    torch.manual_seed(seed)
    model = LlamaModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def tiny_texts(datasets) -> list[str]:
    """Every word a prompt of these datasets can contain (titles, codes, profile values, notes)."""
    from leader.samples import make_samples

    from .prompt import PromptSettings, render

    texts = []
    for dataset in datasets:
        texts += list(dataset.titles.values()) + list(dataset.titles)
        texts += [render(s, dataset.titles, PromptSettings()) for s in make_samples(dataset)]
    return texts
