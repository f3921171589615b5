"""The teacher's CPU attention (`leader.teacher.attention`): causal query blocks compute what eager
attention computes, forward and backward, on padded prompts whose length does not divide into
the blocks, with grouped-query heads."""

from __future__ import annotations

import torch


def _pair(tmp_path):
    """The same tiny random Llama (2 heads over 1 key/value head, 2 layers) loaded twice, fp32:
    eager, blocks."""
    from transformers import LlamaModel

    from leader.teacher.attention import register
    from leader.teacher.tiny import make_tiny_backbone

    folder = make_tiny_backbone(tmp_path, [" ".join(f"w{i}" for i in range(64))], layers=2)
    eager = LlamaModel.from_pretrained(folder, attn_implementation="eager")
    blocks = LlamaModel.from_pretrained(folder, attn_implementation=register())
    return eager, blocks


def _prompts():
    ids = torch.randint(0, 64, (3, 37), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 29:] = 0  # right padding, as the teacher pads
    mask[2, 6:] = 0
    return ids, mask


def test_query_blocks_compute_eager_attention_forward_and_backward(tmp_path):
    from leader.teacher.attention import NAME

    eager, blocks = _pair(tmp_path)
    assert blocks.config._attn_implementation == NAME
    ids, mask = _prompts()
    real = mask.bool()
    states, grads = {}, {}
    for name, model in (("eager", eager), ("blocks", blocks)):
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        states[name] = out[real]
        out[real].square().mean().backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters()}
    assert torch.allclose(states["eager"], states["blocks"], atol=1e-5)
    assert grads["eager"].keys() == grads["blocks"].keys()
    for name, grad in grads["eager"].items():
        assert torch.allclose(grad, grads["blocks"][name], atol=1e-5), name


def test_the_blocks_rely_on_the_causal_mask_and_without_one_compute_eager_whole():
    """Without a mask the function is eager in one block; with a mask that lets a row see later
    keys, the blocks (which drop those keys) differ: they are only for causal attention."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from leader.teacher.attention import causal_block_attention

    class Heads(torch.nn.Module):
        num_key_value_groups = 2

    module = Heads().eval()
    g = torch.Generator().manual_seed(2)
    query, key, value = (torch.randn(2, n, 13, 8, generator=g) for n in (4, 2, 2))
    causal = torch.full((13, 13), torch.finfo(torch.float32).min).triu(1).expand(2, 1, 13, 13)
    for mask in (None, causal):
        ours, _ = causal_block_attention(module, query, key, value, mask, 0.35)
        theirs, _ = eager_attention_forward(module, query, key, value, mask, 0.35)
        assert torch.allclose(ours, theirs, atol=1e-6)
    ours, _ = causal_block_attention(module, query, key, value, torch.zeros(2, 1, 13, 13), 0.35)
    theirs, _ = eager_attention_forward(module, query, key, value, torch.zeros(2, 1, 13, 13), 0.35)
    assert not torch.allclose(ours, theirs, atol=1e-3)
