"""Timing, memory and FLOP accounting of the GPU check, and its result files.

MFU is model FLOPs per second over the card's dense bf16 peak (H100/H200: 989 TFLOP/s, A100: 312;
``PEAK_TFLOPS`` overrides). Model FLOPs of a training forward+backward are 3x the forward's, whatever
gradient checkpointing recomputes (so checkpointing shows as a lower MFU, its real cost). The forward of
``policy.completion_logprobs`` over n sequences of P prompt + T completion tokens counts

  2 * (decoder-layer weights) * n * (P + T)        every token through every layer's matmuls
  + 2 * (vocab * hidden) * n * T                   the LM head, on the T positions that predict a token
  + 2 * layers * hidden * n * (P + T)^2            causal attention, QK^T and AV, half the square

The frozen vision tower's features are computed once per query and cached (outside the timed passes of
fwd_bwd; inside a GRPO round's sampling), so its FLOPs are not in a training forward. Embedding lookups
and norms count nothing. Decoding is memory-bound: it is reported as tokens/s and
ms per step, not as MFU, next to its floor: every decoder weight read once per step at the card's memory
bandwidth (H200 4.8 TB/s, H100 SXM 3.35; ``MEMORY_BANDWIDTH_TBS`` overrides).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def _card_spec(env: str, table) -> float | None:
    """``env``'s value when set, else the first (name part, value) of ``table`` whose name part is in the
    card's name; None on a CPU or an unknown card."""
    if os.environ.get(env):
        return float(os.environ[env])
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in table if k in name), None)


def peak_tflops() -> float | None:
    """The card's dense bf16 peak (TFLOP/s), or None (CPU, an unknown card)."""
    return _card_spec("PEAK_TFLOPS", PEAK_BF16_TFLOPS.items())


# Spec HBM bandwidth (TB/s), the most specific name first (an "H100 PCIe" is not an SXM card).
MEMORY_BANDWIDTH_TBS = (("H200", 4.8), ("H100 NVL", 3.9), ("H100 PCIe", 2.0), ("H100", 3.35),
                        ("A100-SXM4-80GB", 2.039), ("A100 80GB PCIe", 1.935), ("A100", 1.555))


def memory_bandwidth_tbs() -> float | None:
    """The card's memory bandwidth (TB/s), or None (CPU, an unknown card)."""
    return _card_spec("MEMORY_BANDWIDTH_TBS", MEMORY_BANDWIDTH_TBS)


def decoder_weight_bytes(model) -> int:
    """Bytes a decode step reads from the weights: every text-decoder layer's parameters and the LM head
    (the embedding is looked up for one token per row; the vision tower does not run)."""
    layers = model.model.language_model.layers.parameters()
    return sum(_numel(p) * p.element_size() for p in [*layers, model.lm_head.weight])


def weight_read_seconds(weight_bytes: int) -> float | None:
    """The decode step's floor: its weights read once at the card's memory bandwidth (None without one)."""
    bw = memory_bandwidth_tbs()
    return weight_bytes / (bw * 1e12) if bw else None


def kv_bytes_per_token(model) -> int:
    """Bytes of keys and values one token keeps in the KV cache, all layers."""
    c = model.config.text_config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * model.lm_head.weight.element_size()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timer:
    """Wall seconds of the block, the GPU's queued work included."""

    def __enter__(self) -> "Timer":
        sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync()
        self.seconds = time.perf_counter() - self.start


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    """torch.cuda.max_memory_allocated since the last reset_peak, in GiB (None on CPU)."""
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _numel(p) -> int:
    return getattr(p, "ds_numel", None) or p.numel()  # ZeRO-3 leaves an empty placeholder in p


def _matrices(module) -> int:
    return sum(_numel(p) for p in module.parameters() if len(getattr(p, "ds_shape", p.shape)) == 2)


def layer_weights(model) -> int:
    """Matmul weights of the text decoder's layers (norm vectors and biases excluded)."""
    return _matrices(model.model.language_model.layers)


def forward_flops(model, n: int, prompt_len: int, completion_len: int) -> float:
    """Model FLOPs of one ``completion_logprobs`` forward over n sequences (see the module docstring)."""
    c = model.config.text_config
    seq = prompt_len + completion_len
    flops = 2 * layer_weights(model) * n * seq
    flops += 2 * c.vocab_size * c.hidden_size * n * completion_len
    flops += 2 * c.num_hidden_layers * c.hidden_size * n * seq * seq
    return float(flops)


def mfu(flops: float, seconds: float) -> float | None:
    peak = peak_tflops()
    return round(flops / seconds / (peak * 1e12), 4) if peak and seconds > 0 else None


def rate(flops: float, seconds: float) -> dict:
    """TFLOP/s achieved and MFU of ``flops`` done in ``seconds``."""
    return {"tflops": round(flops / seconds / 1e12, 2), "mfu": mfu(flops, seconds)}


def _plain(value):
    """JSON-safe: non-finite floats become the strings 'nan'/'inf' (a check on finiteness then fails)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    return value


class Result(dict):
    """One step's result, rewritten (atomically) after every part so a step killed by its time limit
    still leaves what it measured."""

    def __init__(self, path: Path, **fields):
        super().__init__(fields)
        self.path = path
        self.failed_parts: list[str] = []

    def save(self) -> None:
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(_plain(dict(self)), indent=1) + "\n")
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def part(self, key: str):
        """``with result.part("gc_off") as out:`` fill ``out``; an exception is recorded under
        ``key`` (type and message) and the step carries on with its next part."""
        out: dict = {}
        self[key] = out
        self.save()
        try:
            yield out
        except Exception as exc:  # noqa: BLE001 - every failure of a part is a finding, recorded
            traceback.print_exc()
            out["error"] = error_text(exc)
            self.failed_parts.append(key)
        self.save()


def error_text(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:400]}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
