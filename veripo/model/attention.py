"""The attention implementation a policy loads with: flash-attn where it runs, else PyTorch's sdpa.

flash-attn is built on the cluster (envs/train.yaml says how); a machine without it, or without a
CUDA device, still runs a config that asks for ``flash_attention_2``: it gets ``sdpa`` and one
warning saying why. The memory plan of that fallback: speed/memory_plan.py --attn sdpa.
"""
from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

FLASH = "flash_attention_2"
FALLBACK = "sdpa"


@functools.cache
def flash_attention_problem() -> str | None:
    """Why flash_attention_2 cannot run in this process (None: it can); checked and, when it cannot,
    warned about once per process."""
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:  # ImportError; a build for another torch or CUDA fails with OSError/RuntimeError
        problem = f"flash_attn does not import ({type(exc).__name__}: {exc})"
    else:
        import torch

        problem = None if torch.cuda.is_available() else "no CUDA device is available"
    if problem:
        log.warning("attn_implementation %s was requested but %s: using %s instead (install flash-attn as "
                    "envs/train.yaml describes)", FLASH, problem, FALLBACK)
    return problem


def choose(requested: str | None) -> str | None:
    """``requested``, except ``flash_attention_2`` where flash-attn cannot run: ``sdpa`` then."""
    if requested == FLASH and flash_attention_problem() is not None:
        return FALLBACK
    return requested
