"""How much memory a vLLM engine may take: sized from the job's resources, never from the whole machine.

Left alone, vLLM on CPU reserves ``gpu_memory_utilization`` (0.9) of the machine's RAM for its KV cache,
whatever the job asked for: on a 24 GB machine every job of the tiny vLLM chain was resident at 14-23 GB
against ``mem_mb: 4000``, the OOM killer took the judge's engine, and a rerun refused to start (vLLM
checks that share against the memory still free). So every engine we build (GRPO's rollouts, the vLLM
judge, the vLLM evaluation) gets a KV cache of a stated size, in whole GiB:

- ``kv_cache_gib`` of the engine's config section (``grpo.vllm``, ``verifier.judge.engine_args``,
  ``eval.vllm``) when set;
- else, on CPU, what the job's memory leaves: the rule's ``mem_mb`` (the rule passes it as
  ``VERIPO_MEM_MB``; shared by the node's ranks) less ``PROCESS_GIB`` for the process itself (torch,
  vLLM, activations) less the checkpoint's weights once per copy the process holds; at most what the
  engine can ever fill (``max_num_seqs`` sequences of ``max_model_len`` tokens); below 1 GiB the job
  stops, naming both keys;
- else (no job memory: a script run by hand) ``VLLM_CPU_KVCACHE_SPACE`` as set, or 1 GiB.

On CPU the size goes to vLLM as ``VLLM_CPU_KVCACHE_SPACE`` (GiB), set before the engine is built; it
also turns off vLLM's check of ``gpu_memory_utilization`` against free RAM. On a GPU ``kv_cache_gib``
becomes ``kv_cache_memory_bytes``; without it ``gpu_memory_utilization`` sizes the engine as before (the
job's ``mem_mb`` is host memory, not the card's).
"""
from __future__ import annotations

import json
import math
import os
import sys

from veripo.config import ConfigError

GIB = 1 << 30
PROCESS_GIB = 2.0  # resident before the KV cache: python, torch, vLLM and the engine's buffers
MEM_ENV = "VERIPO_MEM_MB"  # the job's memory in MB, set by the rules that start an engine
KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default batch of sequences


def weights_bytes(model_path: str) -> int:
    """Size of a local checkpoint's weight files (0 for a hub id)."""
    if not os.path.isdir(model_path):
        return 0
    return sum(os.path.getsize(os.path.join(model_path, f)) for f in os.listdir(model_path)
               if f.endswith((".safetensors", ".bin", ".pt")))


def kv_bytes_needed(model_path: str, settings: dict) -> int | None:
    """The most KV cache the engine can fill: ``max_num_seqs`` sequences of ``max_model_len`` tokens (None
    when the checkpoint's config does not say its shape)."""
    try:
        with open(os.path.join(model_path, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    text = cfg.get("text_config") or cfg
    try:
        layers, heads = int(text["num_hidden_layers"]), int(text["num_attention_heads"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        max_len = int(settings.get("max_model_len") or text["max_position_embeddings"])
    except (KeyError, TypeError, ValueError):
        return None
    dtype = str(settings.get("dtype") or cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    per_token = 2 * layers * kv_heads * head_dim * (4 if "32" in dtype else 2)  # keys and values
    return per_token * max_len * int(settings.get("max_num_seqs") or DEFAULT_MAX_NUM_SEQS)


def size_engine(settings: dict, model_path: str, where: str, weight_copies: int = 1,
                cuda: bool | None = None) -> dict:
    """``settings`` (the engine's config section ``where``) without ``kv_cache_gib``, its KV cache sized as
    the module says; on CPU ``VLLM_CPU_KVCACHE_SPACE`` is set. ``weight_copies``: the checkpoint's weights
    the process holds besides the KV cache (an engine 1; GRPO's engine plus the trainer's parameters,
    gradients and two Adam moments 5)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    settings = dict(settings)
    explicit = settings.pop("kv_cache_gib", None)
    if cuda:
        if explicit is not None:
            settings["kv_cache_memory_bytes"] = int(explicit) * GIB
        return settings
    if explicit is not None:
        gib, why = int(explicit), f"{where}.kv_cache_gib"
    elif os.environ.get(MEM_ENV):
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        job_gib = int(os.environ[MEM_ENV]) / 1024 / ranks
        free = job_gib - PROCESS_GIB - weight_copies * weights_bytes(model_path) / GIB
        gib = math.floor(free)
        if gib < 1:
            raise ConfigError(f"the job's memory ({os.environ[MEM_ENV]} MB, resources mem_mb, over {ranks} rank(s)) "
                              f"leaves {free:.2f} GiB for vLLM's KV cache after {PROCESS_GIB} GiB for the process and "
                              f"{weight_copies} x the weights of {model_path}: raise the rule's mem_mb or set "
                              f"{where}.kv_cache_gib (at least 1)")
        needed = kv_bytes_needed(model_path, settings)
        if needed is not None:
            gib = min(gib, max(1, math.ceil(needed / GIB)))
        why = f"from mem_mb {os.environ[MEM_ENV]}"
    else:
        gib, why = int(os.environ.get(KV_ENV) or 1), f"{KV_ENV}" if os.environ.get(KV_ENV) else "no job memory given"
    os.environ[KV_ENV] = str(gib)
    print(f"vllm: KV cache {gib} GiB ({why})", file=sys.stderr, flush=True)
    return settings
