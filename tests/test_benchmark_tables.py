"""The teacher benchmark's table names the CPU kind and judges each share against that kind's target."""

from __future__ import annotations

from benchmarks.teacher_bench import cpu_kind, table


def _result(flags: list[str], train: float, features: float) -> dict:
    forward = 200e6  # FLOPs per token; ceiling = 400 GFLOP/s / 200 MFLOP = 2,000 tokens/s forward, 1,000 training
    return {
        "machine": {"cpus": 2, "processor": "Some CPU", "bf16_flags": flags},
        "bf16_matmul_gflops": 400.0,
        "bf16_matmul_gflops_readings": [380.0, 400.0, 650.0],
        "forward_flops_per_token": forward,
        "setup": {"model": "m", "batch_size": 8, "max_tokens": 256, "mean_prompt_tokens": 200.0},
        "padding_share": {"train_batches": 0.01, "feature_batches": 0.0},
        "train_tokens_per_s": {
            "fp32": 1.0,
            "bf16": train,
            "bf16-eager": 300.0,
            "bf16-dropout": 1.0,
            "bf16-checkpointed": 1.0,
            "4bit": train,
        },
        "feature_tokens_per_s": features,
        "feature_tokens_per_s_eager": 1000.0,
    }


def test_cpu_kind():
    assert cpu_kind(["amx_bf16", "amx_tile", "avx512_bf16"]) == "amx"
    assert cpu_kind(["avx512_bf16"]) == "avx512_bf16"
    assert cpu_kind([]) is None


def test_shares_are_judged_by_the_cpu_kind():
    amd = table(_result(["avx512_bf16"], train=499.0, features=1500.0))
    assert "no AMX" in amd and "400 GFLOP/s on 2 threads (the ceiling: median of 3 readings, 380-650)" in amd
    assert "not compiled (--no-compile) | 300 tokens/s = 30.0% |" in amd
    assert "not compiled (--no-compile) | 1,000 tokens/s = 50.0% |" in amd
    assert "49.9% of the training ceiling | >= 50% of the ceiling on avx512_bf16: MISSED" in amd
    assert "75.0% of the forward ceiling | >= 75% of the ceiling on avx512_bf16: met" in amd
    amx = table(_result(["amx_bf16", "avx512_bf16"], train=250.0, features=990.0))
    assert "25.0% of the training ceiling | >= 25% of the ceiling on amx: met" in amx
    assert "49.5% of the forward ceiling | >= 50% of the ceiling on amx: MISSED" in amx
    assert "1.00 x bf16" in amx
    assert "no target" in table(_result([], train=1.0, features=1.0))
