"""The teacher's attention on a CPU: eager causal self-attention, computed in query blocks.

    queries [B, heads, T, d] cut into BLOCKS row blocks; block i (rows s..e) attends to keys 0..e
    scores = q_i @ k[:e]^T * scaling + mask[s:e, :e] -> softmax (fp32) -> @ v[:e]
    the blocks' outputs, concatenated, are eager attention's output

In a causal mask every key after row e is masked for the rows before e, and a masked score's
softmax weight is exactly zero, so dropping those keys changes nothing but the work: with four
blocks the score matrices are 10/16 of T x T (eager computes all of it). On a CPU the scores'
softmax is the pass's largest cost after the matrix products: in a SmolLM2-135M feature pass at
<= 256 tokens, 27% of the time went to that one fused kernel, which writes and reads back an fp32
copy of the [B, heads, T, T] scores. The blocks' matrices are smaller and fewer (BENCHMARKS.md).

Registered with transformers under NAME (its mask is eager's: causal plus padding, always
materialised); `backbone.short_prompt_attention` picks it for a trained teacher's forward passes
on a CPU (features, `leader evaluate`, bench), where the teacher trained with eager attention:
the blocks compute the same numbers (bit for bit on the feature pass of BENCHMARKS.md). In
training, whose parts hold a few rows each, they did not pay. Attention with a cache or without
a mask (key length != query length, or no mask) is computed as one block, i.e. exactly as eager.
"""

from __future__ import annotations

NAME = "leader_causal_blocks"
"""The attention implementation's name in transformers' registries."""
BLOCKS = 4
"""Query blocks per attention (of 2, 4 and 8, 4 was fastest in alternating feature passes)."""


def _repeat_heads(states, groups: int):
    """Key or value heads [B, kv_heads, T, d] repeated for grouped-query attention [B, heads, T, d]."""
    if groups == 1:
        return states
    batch, heads, length, width = states.shape
    return states[:, :, None].expand(batch, heads, groups, length, width).reshape(batch, heads * groups, length, width)


def causal_block_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' attention interface: (output [B, T, heads, d], None); see the module docstring."""
    import torch

    groups = getattr(module, "num_key_value_groups", 1)
    key, value = _repeat_heads(key, groups), _repeat_heads(value, groups)
    length = query.shape[2]
    if attention_mask is not None and key.shape[2] == length:
        rows = [(block * length // BLOCKS, (block + 1) * length // BLOCKS) for block in range(BLOCKS)]
        ends = [stop for _, stop in rows]  # causal: rows before `stop` see no key from `stop` on
    else:
        rows, ends = [(0, length)], [key.shape[2]]
    outputs = []
    for (start, stop), end in zip(rows, ends):
        scores = torch.matmul(query[:, :, start:stop], key[:, :, :end].transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask[:, :, start:stop, :end]
        weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
        outputs.append(torch.matmul(weights, value[:, :, :end]))
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return output.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make NAME known to transformers (attention and mask); returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, causal_block_attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME
