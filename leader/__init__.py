"""leader: distil a LoRA-tuned LLM into a small medication recommender that runs on a CPU.

Importing this package must stay cheap and must not import torch (ARCHITECTURE.md).
"""

__version__ = "0.1.0"
