"""The CPU a benchmark ran on, named the same way in every BENCHMARKS.md section: its model and the
flags that decide bf16 speed, so figures from an AMX Xeon and an AVX-512 EPYC are never mixed."""

from __future__ import annotations

import os
import platform
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> dict:
    """{"processor": model name, "bf16_flags": the BF16_FLAGS it has} from /proc/cpuinfo (Linux)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {"processor": name, "bf16_flags": sorted(f for f in flags if f in BF16_FLAGS)}


def describe() -> str:
    """E.g. "AMD EPYC (avx512_bf16; no AMX), 2 cores"."""
    c = cpu()
    amx = "AMX" if "amx_bf16" in c["bf16_flags"] else "no AMX"
    flags = ", ".join(f for f in c["bf16_flags"] if not f.startswith("amx")) or "no bf16 instructions"
    return f"{c['processor']} ({flags}; {amx}), {os.cpu_count()} cores"
