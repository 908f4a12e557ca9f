"""Per-GPU memory plan of the GPU jobs: every term, its formula, whether the job fits, and the ZeRO
stage a training job runs with under ``train.zero_config: auto``.

Pure arithmetic and YAML (no torch), so a job, the CLI (speed/memory_plan.py) and the tests read the
same formulas. The model's shape comes from config.json of a checkpoint (a job: its loaded model's
config), from ``tiny_model`` for the tiny base, or from the known Qwen2.5-VL shapes. Videos are assumed
long enough to reach ``max_frames`` and frames to fill ``max_pixels`` (the worst case) unless told
otherwise.

Jobs (one row block each): grpo_train's three phases (sampling with ZeRO-3's gathered weights and a KV
cache for G rollouts; scoring the old log-probs without grad; the update: forward/backward of one
micro-batch, ``grpo.micro_batch`` sequences or as many as ``grpo.micro_batch_tokens`` allows, and the
optimiser step), dpo_train's two (the reference log-probs of one pair without grad, then the update on
the pairs of one forward) and eval_generate with the HF backend (``eval.batch_size`` questions per
prefill + decode).
Terms are summed as if all were live at once (conservative: e.g. the optimiser step's fp32 gradients
never coexist with activations). A job fits when the sum is at most (1 - margin) x GPU memory: the
margin is for what no term counts (the caching allocator's fragmentation, kernel workspaces).

Activation formulas count exactly the tensors autograd saves in transformers' Qwen2.5-VL decoder layer
and vision block, and the no-grad working set is a layer's peak of live tensors: tests/test_memory_plan.py
measures both on CPU (saved_tensors_hooks; a dispatch mode counting live storages) for sdpa and eager.
The flash-attention extra and the ZeRO buffers are derived from the code, not measured.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from veripo.run_settings import merge_layers

ROOT = Path(__file__).resolve().parents[2]  # the repository: zero_config paths are relative to it
GIB = 1024 ** 3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# CUDA context, cuBLAS workspaces and NCCL communicator buffers of one process: typically 1-2 GiB; the
# figure nvidia-smi shows for an idle initialised training process.
RUNTIME_OVERHEAD = 2 * GIB
# Prompt text around the video: system prompt, the authors' template (~150 tokens) and the question
# with its options; long multiple-choice questions (MMVU, Video-MMMU) stay under this.
TEXT_TOKENS = 512
# grpo.vllm.gpu_memory_utilization when the config leaves it out: vllm.LLM's default.
VLLM_DEFAULT_SHARE = 0.9
# What a colocated vLLM engine asleep at level 1 still holds on the GPU (its weights are in host memory,
# its KV cache freed): the CUDA-graph pool and buffers allocated outside its sleep pool. An allowance,
# not measured (no GPU where this was written).
VLLM_ASLEEP = 2 * GIB
# DeepSpeed's defaults for keys a zero_config JSON may leave out (deepspeed/runtime/zero/config.py).
ZERO_DEFAULTS = {"reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8, "stage3_prefetch_bucket_size": 5e7,
                 "stage3_max_live_parameters": 1e9, "sub_group_size": 1e9}


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a Qwen2.5-VL depends on (names as in its config.json)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    patch: int = 14
    merge: int = 2
    temporal_patch: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


KNOWN_SHAPES = {
    "7b": ModelShape(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064,
                     tie_embeddings=False, vision_hidden=1280, vision_depth=32, vision_heads=16,
                     vision_intermediate=3420),
    "3b": ModelShape(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151936,
                     tie_embeddings=True, vision_hidden=1280, vision_depth=32, vision_heads=16,
                     vision_intermediate=3420),
}


# Config -------------------------------------------------------------------------------------------

def load_config(paths: list[str]) -> dict:
    config: dict = {}
    for path in paths:
        config = merge_layers(config, yaml.safe_load(Path(path).read_text()) or {})
    return config


def _shape_from_json(cfg: dict) -> ModelShape:
    # transformers >= 5 nests the language model's keys under text_config; hub checkpoints have them
    # at the top level.
    text = cfg.get("text_config") or cfg
    vis = cfg["vision_config"]
    return ModelShape(
        hidden=text["hidden_size"], layers=text["num_hidden_layers"], heads=text["num_attention_heads"],
        kv_heads=text["num_key_value_heads"], intermediate=text["intermediate_size"], vocab=text["vocab_size"],
        tie_embeddings=bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        vision_hidden=vis["hidden_size"], vision_depth=vis["depth"], vision_heads=vis["num_heads"],
        vision_intermediate=vis["intermediate_size"], patch=vis.get("patch_size", 14),
        merge=vis.get("spatial_merge_size", 2), temporal_patch=vis.get("temporal_patch_size", 2))


def model_shape(config: dict, shape: str | None = None) -> ModelShape:
    """The shape of ``config``'s base model: ``shape`` when given; the tiny model's from ``tiny_model``
    (veripo/model/tiny.py's architecture); config.json of a local directory; a known shape for a hub
    id naming 3B or 7B. Anything else is a ValueError asking for --shape."""
    if shape:
        return KNOWN_SHAPES[shape]
    base = config["base_model"]
    if base == "tiny":
        from veripo.config import TINY_VISION_HEADS

        t = config["tiny_model"]
        return ModelShape(hidden=t["hidden_size"], layers=t["num_layers"], heads=t["num_heads"],
                          kv_heads=t["num_kv_heads"], intermediate=2 * t["hidden_size"],
                          vocab=(t["vocab_size"] + 63) // 64 * 64, tie_embeddings=False,
                          vision_hidden=t["vision_hidden_size"], vision_depth=t["vision_depth"],
                          vision_heads=TINY_VISION_HEADS, vision_intermediate=2 * t["vision_hidden_size"])
    local = Path(base) / "config.json"
    if local.is_file():
        return _shape_from_json(json.loads(local.read_text()))
    for name in KNOWN_SHAPES:
        if f"-{name}" in base.lower():
            return KNOWN_SHAPES[name]
    raise ValueError(f"base_model {base!r}: no config.json there and no known shape in the name; "
                     f"pass --shape ({' | '.join(KNOWN_SHAPES)})")


def resources(config: dict, rule: str) -> dict:
    """A rule's resources: ``resources.default`` overridden by the rule's own entry."""
    res = config.get("resources", {})
    return {**res.get("default", {}), **res.get(rule, {})}


def world_size(config: dict, rule: str) -> int:
    r = resources(config, rule)
    return r.get("nodes", 1) * r.get("procs_per_node", 1)


@dataclass(frozen=True)
class Zero:
    """The optimiser engine's memory-relevant settings (train.engine, train.zero_config)."""

    engine: str  # deepspeed | torch
    stage: int
    reduce_bucket: int  # elements
    allgather_bucket: int
    prefetch_bucket: int
    max_live: int  # stage 3: gathered parameters kept at most
    sub_group: int
    offload_optimizer: bool
    offload_param: bool


# train.zero_config "auto": the JSON of the stage the plan picks (run.sh's engines step and the tests use
# the same two files).
AUTO = "auto"
ZERO_CONFIGS = {2: "configs/deepspeed/zero2.json", 3: "configs/deepspeed/zero3.json"}
MARGIN = 0.15  # share of the GPU a job's plan leaves free (Settings.margin, the CLI's --margin)


def zero_from_json(path: str) -> Zero:
    """The memory-relevant settings of a DeepSpeed JSON (relative to the repository or absolute)."""
    p = Path(path)
    z = json.loads((p if p.is_absolute() else ROOT / p).read_text()).get("zero_optimization", {})

    def get(key):
        return int(z.get(key, ZERO_DEFAULTS[key]))

    def offloaded(key):
        return (z.get(key) or {}).get("device", "none") not in ("none", None)

    return Zero("deepspeed", int(z.get("stage", 0)), get("reduce_bucket_size"), get("allgather_bucket_size"),
                get("stage3_prefetch_bucket_size"), get("stage3_max_live_parameters"), get("sub_group_size"),
                offloaded("offload_optimizer"), offloaded("offload_param"))


def zero_setup(config: dict, stage: int | None = None) -> Zero:
    """The engine of ``config``'s training jobs; with ``zero_config: auto``, ZeRO-``stage``'s JSON."""
    train = config["train"]
    if train["engine"] != "deepspeed":
        return Zero("torch", 0, 0, 0, 0, 0, 0, False, False)
    if train["zero_config"] == AUTO:
        if stage is None:
            raise ValueError("train.zero_config auto: the stage is the plan's choice per job (choose_zero_config)")
        return zero_from_json(ZERO_CONFIGS[stage])
    return zero_from_json(train["zero_config"])


@dataclass(frozen=True)
class ZeroChoice:
    """What ``train.zero_config: auto`` resolved to for one job, and why."""

    zero_config: str  # the DeepSpeed JSON the job runs with
    stage: int
    reason: str
    gpu_gib: float | None  # the smallest GPU of the job's ranks (None: no GPU)
    budget_gib: float | None  # (1 - margin) of it
    peak_gib: dict  # ZeRO stage -> the job's largest phase per GPU, as planned

    def record(self) -> dict:
        """settings.json's ``zero``: the choice and the figures it was made from."""
        return {"zero_config": self.zero_config, "stage": self.stage, "chosen_by": "memory plan (zero_config auto)",
                "reason": self.reason, "gpu_gib": self.gpu_gib, "budget_gib": self.budget_gib,
                "planned_peak_gib": {str(k): v for k, v in self.peak_gib.items()}}


def choose_zero_config(jobs_at: Callable[[Zero], list[Job]], gpu_bytes: float | None,
                       margin: float = MARGIN) -> ZeroChoice:
    """ZeRO-2 where every phase of the job (``jobs_at(zero)``: its plan under that engine) fits
    (1 - margin) of the GPU, ZeRO-3 only where ZeRO-2 does not. ZeRO-3 gathers every weight in every
    forward and backward of every micro-batch, which costs the update most of its speed (issue 19: 4.9%
    MFU against 17.8% under ZeRO-2 on one H200); ZeRO-2 keeps the weights whole and shards only the
    gradients and the optimiser state. Without a GPU (``gpu_bytes`` None) there is nothing to fit:
    ZeRO-2."""
    zeros = {stage: zero_from_json(path) for stage, path in ZERO_CONFIGS.items()}
    if gpu_bytes is None:
        return ZeroChoice(ZERO_CONFIGS[2], 2, "no GPU: nothing to fit, ZeRO-2", None, None, {})
    budget = gpu_bytes * (1 - margin)
    peak = {stage: round(max(j.total for j in jobs_at(z)) / GIB, 1) for stage, z in zeros.items()}
    fits = {stage: peak[stage] * GIB <= budget for stage in peak}
    stage = 2 if fits[2] else 3
    reason = (f"ZeRO-2 fits: {peak[2]:.1f} GiB per GPU of a {budget / GIB:.1f} GiB budget" if fits[2] else
              f"ZeRO-2 needs {peak[2]:.1f} GiB per GPU, over the {budget / GIB:.1f} GiB budget: ZeRO-3 "
              f"({peak[3]:.1f} GiB" + (")" if fits[3] else ", over the budget too: expect out of memory)"))
    return ZeroChoice(ZERO_CONFIGS[stage], stage, reason, round(gpu_bytes / GIB, 1), round(budget / GIB, 1), peak)


# Shapes to sizes ----------------------------------------------------------------------------------

def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize (qwen-vl-utils, transformers' processor): both sides multiples of ``factor``
    (patch x merge = 28), area within [min_pixels, max_pixels], aspect ratio kept."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def video_tokens(media: dict, shape: ModelShape, seconds: float | None = None,
                 frame_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(LLM tokens, vision-tower patches) of one video under ``media`` (fps, min/max_frames,
    min/max_pixels), sampled as veripo.media.decode.sample_indices does.

    frames = clamp(fps x seconds, min_frames, max_frames) rounded down to the temporal patch; each
    temporal patch (2 frames) of an h x w frame is (h/28) x (w/28) tokens and merge^2 = 4 times as many
    patches. Without ``seconds`` the video reaches max_frames; without ``frame_size`` a frame fills
    max_pixels (the most tokens the budget allows)."""
    frames = media["max_frames"] if seconds is None else round(seconds * media["fps"])
    frames = max(media.get("min_frames", 2), min(media["max_frames"], frames))
    frames = max(shape.temporal_patch, frames // shape.temporal_patch * shape.temporal_patch)
    factor = shape.patch * shape.merge
    if frame_size is None:
        per_patch = media["max_pixels"] // (factor * factor)
    else:
        h, w = smart_resize(frame_size[1], frame_size[0], factor, media["min_pixels"], media["max_pixels"])
        per_patch = (h // factor) * (w // factor)
    tokens = frames // shape.temporal_patch * per_patch
    return tokens, tokens * shape.merge ** 2


def eval_media(config: dict) -> dict:
    """The eval media setting with the most visual tokens: eval.media with each benchmark's overrides
    (fps, max_frames, min_pixels, max_pixels)."""
    base = config["eval"]["media"]
    candidates = [base] + [{**base, **{k: b[k] for k in ("fps", "max_frames", "min_pixels", "max_pixels") if k in b}}
                           for b in config["eval"].get("benchmarks", {}).values()]
    return max(candidates, key=lambda m: (m["max_frames"], m["max_pixels"]))


def text_params(s: ModelShape) -> int:
    """Language model parameters: embedding, decoder layers (q/k/v with bias, o without; SwiGLU MLP;
    two RMSNorms), final norm, LM head unless tied."""
    layer = (s.hidden * s.hidden + s.hidden) + 2 * (s.hidden * s.kv_width + s.kv_width) + s.hidden * s.hidden \
        + 3 * s.hidden * s.intermediate + 2 * s.hidden
    head = 0 if s.tie_embeddings else s.vocab * s.hidden
    return s.vocab * s.hidden + s.layers * layer + s.hidden + head


def vision_params(s: ModelShape) -> int:
    """Vision tower parameters: 3-D patch embedding, blocks (fused qkv and proj with bias, SwiGLU MLP
    with bias, two RMSNorms), the 2x2 patch merger (RMSNorm + two-layer MLP into the LLM's width)."""
    v, i = s.vision_hidden, s.vision_intermediate
    block = 2 * v + (3 * v * v + 3 * v) + (v * v + v) + 2 * (v * i + i) + (i * v + v)
    merged = v * s.merge ** 2
    merger = v + (merged * merged + merged) + (merged * s.hidden + s.hidden)
    return 3 * s.temporal_patch * s.patch ** 2 * v + s.vision_depth * block + merger


def largest_module_params(s: ModelShape) -> int:
    """ZeRO-3 gathers parameters module by module: the largest one (the embedding / LM head) is what
    one forward or backward step may hold in full."""
    return max(s.vocab * s.hidden, s.hidden * s.intermediate, (s.vision_hidden * s.merge ** 2) ** 2)


def layer_saved_bytes(s: ModelShape, b: int, attn: str | None, kv_len: int) -> int:
    """Bytes autograd saves per token in one decoder layer (activations in dtype of ``b`` bytes).

    Each RMSNorm keeps its fp32 input copy (4h), its rsqrt (4) and the normalised value before the
    weight (b*h); q/k/v and the MLP's gate/up keep their normalised inputs (2 x b*h); the attention
    kernel keeps q (b*h), k and v (b*kv each), its output (b*h) and a fp32 logsumexp per head; the MLP
    keeps gate, silu(gate), up and their product (4 x b*I). o_proj's input is the kernel's output (a
    view). That is what sdpa's flash kernel saves without a padding mask, measured exactly on CPU.

    flash_attention_2 with padding unpads q/k/v and pads the output back: o_proj keeps that padded
    copy (+ b*h). sdpa with a padding mask (every batched forward here) repeats k/v to all heads
    (+ 2b*(h-kv)) and turns the boolean mask into an additive one it keeps per layer (+ b*kv_len).
    eager also keeps fp32 softmax and the bf16 probabilities (6*heads*kv_len, quadratic in length)
    instead of the logsumexp. None is transformers' default, sdpa."""
    h, kv, i = s.hidden, s.kv_width, s.intermediate
    core = 2 * (4 * h + 4 + b * h) + 2 * b * h + b * (2 * h + 2 * kv) + 4 * s.heads + 4 * b * i
    if attn == "flash_attention_2":
        return core + b * h
    repeated = 2 * b * (h - kv)
    if attn in (None, "sdpa"):
        return core + repeated + b * kv_len
    if attn == "eager":
        return core + repeated + (4 + b) * s.heads * kv_len - 4 * s.heads
    raise ValueError(f"attn_implementation {attn!r}: expected flash_attention_2, sdpa, eager or null")


def outside_layers_saved_bytes(s: ModelShape, b: int) -> int:
    """Per token, what a forward saves outside the decoder layers: the input ids (int64, for the
    embedding's backward), the final RMSNorm (4h + 4 + b*h) and the rotary cos/sin (2 x b*head_dim)."""
    return 8 + 4 * s.hidden + 4 + b * s.hidden + 2 * b * s.head_dim


def checkpointed_layer_bytes(s: ModelShape, b: int) -> int:
    """With gradient checkpointing a layer keeps only its input hidden state (b*h per token): measured."""
    return b * s.hidden


def layer_backward_bytes(s: ModelShape, b: int) -> int:
    """Per token, the gradients alive while one layer runs backward: of its output and input (2 x b*h)
    and of the MLP's gate and up projections (2 x b*I)."""
    return 2 * b * s.hidden + 2 * b * s.intermediate


def layer_nograd_bytes(s: ModelShape, b: int, attn: str | None, kv_len: int) -> int:
    """Per token, the most a forward without grad (prefill, scoring) holds at once in one decoder layer,
    plus what it holds across layers: rotary cos/sin (2 x b*head_dim) and sdpa's boolean mask (kv_len).
    Every intermediate is freed when its last user returns, so the layer's peak is the largest of
      the norms: the fp32 copy and product (8h) beside the input and output (2 x b*h);
      attention: input, normalised input, q, rotated q and its rotate_half temporary, output
        (6 x b*h) and k, v, rotated k (3 x b*kv); sdpa with a mask adds repeated k/v and the additive mask;
      the MLP: residual, attention output, normalised input (3 x b*h) and silu(gate), up, product (3 x b*I).
    Measured on CPU (sdpa) within 1% by tests/test_memory_plan.py; the MLP phase is the peak."""
    h, kv, i = s.hidden, s.kv_width, s.intermediate
    attention = 6 * b * h + 3 * b * kv
    shared = 2 * b * s.head_dim
    if attn in (None, "sdpa", "eager"):
        attention += 2 * b * (h - kv) + b * kv_len
        shared += kv_len
    if attn == "eager":
        attention += (4 + b) * s.heads * kv_len
    return max(8 * h + 2 * b * h, attention, 3 * b * h + 3 * b * i) + shared


def vision_block_saved_bytes(s: ModelShape, b: int) -> int:
    """Bytes autograd saves per patch in one vision block (measured on CPU, sdpa): two RMSNorms
    (2 x (4v + 4 + b*v)), their outputs as qkv/MLP inputs (2 x b*v), the fused qkv output that v is a
    view of (3 x b*v), rotated q and k (2 x b*v), attention output and logsumexp (b*v + 4*heads),
    proj's contiguous input (b*v), the MLP (4 x b*I). No mask: attention runs per window / frame."""
    v, i = s.vision_hidden, s.vision_intermediate
    return 2 * (4 * v + 4 + b * v) + 2 * b * v + 3 * b * v + 2 * b * v + b * v + 4 * s.vision_heads + b * v \
        + 4 * b * i


def kv_bytes_per_token(s: ModelShape, b: int) -> int:
    """The KV cache: a key and a value of kv_heads x head_dim per layer per token."""
    return s.layers * 2 * s.kv_width * b


# Terms and jobs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    name: str
    bytes: float
    formula: str


@dataclass(frozen=True)
class Job:
    name: str
    terms: tuple[Term, ...]

    @property
    def total(self) -> float:
        return sum(t.bytes for t in self.terms)


@dataclass(frozen=True)
class Settings:
    """What the plan reads besides the config: its command-line knobs."""

    gpu_gb: float = 80.0
    margin: float = MARGIN
    gpus: int | None = None  # ranks of grpo_train; None: its resources' nodes x procs_per_node
    shape: str | None = None
    attn: str | None = "config"  # an attn_implementation, or "config": the config's
    text_tokens: int = TEXT_TOKENS
    seconds: float | None = None
    frame_size: tuple[int, int] | None = None
    rollouts: str = "config"  # who samples GRPO's rollouts: hf, vllm, or "config": grpo.rollout_backend

    @property
    def budget(self) -> float:
        return self.gpu_gb * GIB * (1 - self.margin)


def _n(n: float) -> str:
    return f"{n:g}" if float(n).is_integer() else f"{n:.2f}"


def _g(n: float) -> str:
    return f"{n / 1e9:.2f}e9" if n >= 1e8 else f"{n:,.0f}"


def _state_terms(s: ModelShape, z: Zero, world: int, b: int, freeze_vision: bool, gathered: bool,
                 kl_coef: float) -> list[Term]:
    """Weights, gradients and optimiser state of one training rank, as ZeRO shards them; with
    ``gathered`` (generation, scoring) the whole model gathered instead of the update's buffers."""
    p_all = text_params(s) + vision_params(s)
    p_train = text_params(s) + (0 if freeze_vision else vision_params(s))
    mixed = b == 2 and z.engine == "deepspeed"
    terms = []
    # ZeRO-3 shards the weights (frozen ones included) over the ranks; below stage 3 each holds all.
    w_shard = world if z.stage >= 3 else 1
    weights = 0 if z.offload_param else b * p_all / w_shard
    terms.append(Term("weights", weights, f"{b} B x {_g(p_all)} params" + (f" / {world}" if w_shard > 1 else "")))
    if gathered and z.stage >= 3:
        # Sampling and no-grad scoring gather every weight once (TrainEngine): ranks decode different
        # numbers of tokens, so gathering module by module would not match across ranks.
        terms.append(Term("gathered weights (ZeRO-3)", b * p_all, f"{b} B x {_g(p_all)} params"))
    elif z.stage >= 3:
        # Forward and backward gather a module at a time plus the prefetch bucket, and keep gathered
        # ones for reuse up to stage3_max_live_parameters; the backward also makes a module's full
        # gradient before reduce-scattering it.
        big = largest_module_params(s)
        live = max(z.max_live, big + z.prefetch_bucket)
        terms.append(Term("gathered weights + a module's grad (ZeRO-3)", b * (live + big),
                          f"{b} B x ({_g(live)} live + {_g(big)})"))
    # Gradients of the trainable weights, in the weights' dtype; sharded from stage 2.
    g_shard = world if z.stage >= 2 else 1
    terms.append(Term("gradients", b * p_train / g_shard,
                      f"{b} B x {_g(p_train)} trainable" + (f" / {world}" if g_shard > 1 else "")))
    # AdamW: with bf16/fp16 weights DeepSpeed keeps a fp32 master copy and two fp32 moments (12 B);
    # in fp32 just the two moments (8 B); plain torch AdamW keeps the moments in the weights' dtype.
    per_param = (12 if mixed else 8) if z.engine == "deepspeed" else 2 * b
    o_shard = world if z.stage >= 1 else 1
    opt = 0 if z.offload_optimizer else per_param * p_train / o_shard
    terms.append(Term("optimiser state (AdamW)", opt,
                      f"{per_param} B x {_g(p_train)}" + (f" / {world}" if o_shard > 1 else "")))
    if mixed and not z.offload_optimizer and not gathered:
        # The step upcasts the gradient shard to fp32 (stage 3: one sub_group at a time).
        n = p_train / o_shard if z.stage < 3 else min(z.sub_group, p_train / world)
        terms.append(Term("fp32 gradients in the step", 4 * n, f"4 B x {_g(n)}"))
    if z.stage >= 2 and not gathered:
        # the backward collects gradients here before reducing them
        terms.append(Term("reduce bucket", b * z.reduce_bucket, f"{b} B x {_g(z.reduce_bucket)}"))
    if z.stage in (1, 2) and not gathered:
        # after the step each rank's updated shard goes out to the others through this bucket
        terms.append(Term("allgather bucket", b * z.allgather_bucket, f"{b} B x {_g(z.allgather_bucket)}"))
    if kl_coef > 0:
        # grpo.kl_coef > 0 deep-copies the policy as a frozen reference before ZeRO shards anything.
        terms.append(Term("reference model (kl_coef > 0)", b * p_all, f"{b} B x {_g(p_all)}"))
    return terms


def _forward_terms(s: ModelShape, b: int, attn: str | None, n: float, length: int, completion: int,
                   patches: int, checkpointing: bool, chunk: int, grad: bool, freeze_vision: bool) -> list[Term]:
    """Activations of one policy.completion_logprobs forward (and backward when ``grad``) of ``n``
    sequences of ``length`` tokens, the last ``completion`` of them scored, each with a video of
    ``patches`` vision patches. ``n`` may be fractional: a token budget that whole longest sequences do
    not fill can be filled by shorter ones (activations grow with the tokens of the forward)."""
    tokens = n * length
    ns = _n(n)
    terms = []
    if grad and checkpointing:
        per = checkpointed_layer_bytes(s, b)
        terms.append(Term("activations: layer inputs (checkpointed)", tokens * s.layers * per,
                          f"{ns} seq x {length} tok x {s.layers} layers x {per} B"))
        # The backward recomputes one layer at a time: that layer's saved tensors and its gradients.
        per = layer_saved_bytes(s, b, attn, length) + layer_backward_bytes(s, b)
        terms.append(Term("activations: one layer recomputed + grads", tokens * per,
                          f"{ns} x {length} x {per} B"))
    elif grad:
        per = layer_saved_bytes(s, b, attn, length)
        terms.append(Term("activations: every layer saved", tokens * s.layers * per,
                          f"{ns} seq x {length} tok x {s.layers} layers x {per} B"))
        per = layer_backward_bytes(s, b)
        terms.append(Term("activations: one layer's grads", tokens * per, f"{ns} x {length} x {per} B"))
    else:
        per = layer_nograd_bytes(s, b, attn, length)
        terms.append(Term("one layer's working set (no grad)", tokens * per, f"{ns} x {length} x {per} B"))
    if grad:
        # plus the LM head's input: a slice of the final hidden states, which keeps all of them
        per = outside_layers_saved_bytes(s, b) + b * s.hidden
        terms.append(Term("activations: embedding, final norm, LM-head input", tokens * per,
                          f"{ns} x {length} x {per} B"))
    # policy.completion_logprobs calls the LM head once on the completion positions (bf16 logits of all
    # of them) and takes the float32 log-softmax logprob_chunk positions at a time, each chunk recomputed
    # in the backward. With grad the bf16 logits stay for those recomputes, and the backward adds their
    # accumulated gradient, one chunk's gradient (slicing's backward makes it full-size) and, as the
    # accumulation is out of place, their sum: 4 copies at the peak (measured on CPU).
    copies = 4 if grad else 1
    terms.append(Term("LM-head logits (all completion tokens)", copies * n * completion * b * s.vocab,
                      f"{copies} x {ns} x {completion} tok x {b} B x {s.vocab} vocab"))
    # One chunk: the fp32 copy (4) and log-softmax (4); in the backward also the log-softmax's gradient
    # (4) and the chunk's bf16 gradient (2).
    rows, per = n * min(chunk, completion), (14 if grad else 8)
    terms.append(Term("fp32 log-softmax chunk", rows * per * s.vocab,
                      f"{ns} x {min(chunk, completion)} tok x {per} B x {s.vocab} vocab"))
    # A frozen tower's features were computed when the query was sampled and are reused; a trainable
    # one runs in every forward with grad, once for the n sequences (they share the prompt).
    if patches and grad and not freeze_vision:
        per = vision_block_saved_bytes(s, b)
        if checkpointing:
            terms.append(Term("vision tower: block inputs (checkpointed) + one block",
                              patches * (s.vision_depth * b * s.vision_hidden + per),
                              f"{patches} patches x ({s.vision_depth} x {b * s.vision_hidden} + {per}) B"))
        else:
            terms.append(Term("vision tower: every block saved", patches * s.vision_depth * per,
                              f"{patches} patches x {s.vision_depth} blocks x {per} B"))
    return terms


def _attn(config: dict, settings: Settings) -> str | None:
    return config.get("attn_implementation") if settings.attn == "config" else settings.attn


def vllm_rollouts(config: dict, settings: Settings) -> bool:
    """Whether GRPO's rollouts come from a colocated vLLM engine: grpo.rollout_backend vllm, or auto (a
    GPU plan: vLLM wherever the job's env has it), unless ``settings.rollouts`` says otherwise."""
    backend = config["grpo"].get("rollout_backend", "hf") if settings.rollouts == "config" else settings.rollouts
    return backend in ("vllm", "auto")


def vllm_terms(engine: dict, s: ModelShape, b: int, gpu_gb: float) -> tuple[list[Term], list[Term]]:
    """The colocated vLLM engine of one rank (``engine``: grpo.vllm): (its terms while it samples, while
    the trainer scores and updates). Awake it holds its gpu_memory_utilization share of the card: its own
    copy of every weight, the rest for its KV cache, activation peak and CUDA graphs. With sleep mode
    (enable_sleep_mode, on by default on CUDA: veripo/model/vllm_rollouts.py) it sleeps at level 1 between
    rounds: weights in host memory, KV cache freed, VLLM_ASLEEP left; without, it keeps its whole share."""
    share = engine.get("gpu_memory_utilization", VLLM_DEFAULT_SHARE)
    p_all = text_params(s) + vision_params(s)
    awake = [Term("vLLM engine: weights (its own copy)", b * p_all, f"{b} B x {_g(p_all)} params"),
             Term("vLLM engine: KV cache, activations, graphs", max(0.0, share * gpu_gb * GIB - b * p_all),
                  f"gpu_memory_utilization {share:g} x {gpu_gb:g} GiB - its weights")]
    if not engine.get("enable_sleep_mode", True):
        return awake, [Term(f"{t.name} (no sleep mode)", t.bytes, t.formula) for t in awake]
    return awake, [Term("vLLM engine asleep (level 1)", VLLM_ASLEEP, "allowance, not measured: CUDA graphs, buffers")]


@dataclass(frozen=True)
class TrainSetup:
    """What a training job's memory depends on besides the model and the engine: one rank's view."""

    dtype_bytes: int
    attn: str | None
    world: int
    checkpointing: bool
    chunk: int  # train.logprob_chunk
    prompt: int  # prompt tokens, text and video
    patches: int  # vision patches of the prompt's video
    freeze_vision: bool


def sequences_per_forward(length: int, most: float, budget: int | None) -> float:
    """Sequences of ``length`` tokens one forward carries: ``most``, and under a token ``budget`` no
    more than it holds (at least one: a sequence over the budget gets a forward of its own). Fractional
    where shorter sequences fill what whole longest ones leave: the activations follow the tokens."""
    return most if budget is None else min(most, max(1.0, budget / length))


def grpo_jobs(s: ModelShape, t: TrainSetup, z: Zero, G: int, new: int, micro: int, micro_tokens: int | None,
              kl_coef: float, rollout_engine: tuple[list[Term], list[Term]] | None = None) -> list[Job]:
    """grpo_train's phases: sampling G rollouts of ``new`` tokens, scoring them and the update, whose
    forwards carry ``micro`` rollouts of a group or as many as ``micro_tokens`` holds. ``rollout_engine``:
    a colocated vLLM engine's terms (vllm_terms), awake while it samples and asleep after."""
    b, attn, prompt, patches = t.dtype_bytes, t.attn, t.prompt, t.patches
    overhead = Term("CUDA context, cuBLAS, NCCL", RUNTIME_OVERHEAD, "fixed")
    states = _state_terms(s, z, t.world, b, t.freeze_vision, gathered=True, kl_coef=kl_coef)
    kv = kv_bytes_per_token(s, b)
    n = sequences_per_forward(prompt + new, min(micro, G), micro_tokens)
    # policy.sample: one prefill of the prompt (vision once), its cache copied G times and grown by one
    # token per step to prompt + max_new_tokens; growing a layer's cache copies that layer once more.
    sample = Job("grpo_train: sample", tuple(states + [
        Term("KV cache", G * (prompt + new) * kv, f"{G} x ({prompt} + {new}) tok x {kv} B"),
        Term("KV cache growth (one layer copied)", G * (prompt + new) * kv / s.layers, f"KV cache / {s.layers}"),
        Term("prefill: one layer's working set", prompt * layer_nograd_bytes(s, b, attn, prompt),
             f"{prompt} tok x {layer_nograd_bytes(s, b, attn, prompt)} B"),
        Term("vision tower: a block's working set (no grad)", patches * vision_block_saved_bytes(s, b),
             f"{patches} patches x {vision_block_saved_bytes(s, b)} B"),
        # next_tokens: fp32 logits, log-softmax, suppressed/penalised copy, softmax, top-p sort + index
        Term("sampling logits", G * s.vocab * 6 * 4, f"{G} x {s.vocab} x 6 x 4 B"),
        overhead,
    ]))
    asleep: list[Term] = []
    if rollout_engine is not None:
        # the trainer's side as for our sampler (under ZeRO-3 the weights stay gathered through the
        # engine's weight sync and sampling), the engine's share instead of our KV cache and prefill
        awake, asleep = rollout_engine
        sample = Job("grpo_train: sample (vLLM)", tuple(states + awake + [overhead]))
    # Old (and reference) log-probs of the rollouts, in the update's micro-batches, the weights gathered.
    score = Job("grpo_train: score", tuple(states + _forward_terms(
        s, b, attn, n, prompt + new, new, patches, t.checkpointing, t.chunk, grad=False,
        freeze_vision=t.freeze_vision) + asleep + [overhead]))
    update = Job("grpo_train: update", tuple(
        _state_terms(s, z, t.world, b, t.freeze_vision, gathered=False, kl_coef=kl_coef) + _forward_terms(
            s, b, attn, n, prompt + new, new, patches, t.checkpointing, t.chunk, grad=True,
            freeze_vision=t.freeze_vision) + asleep + [overhead]))
    return [sample, score, update]


def dpo_jobs(s: ModelShape, t: TrainSetup, z: Zero, completion: int, micro_tokens: int | None) -> list[Job]:
    """dpo_train's phases: the reference log-probs (one pair per forward, the weights gathered) and the
    update, whose forwards carry one pair (chosen + rejected, padded to ``completion`` tokens) or as
    many pairs of one query as ``micro_tokens`` holds."""
    b, attn, length = t.dtype_bytes, t.attn, t.prompt + completion
    overhead = Term("CUDA context, cuBLAS, NCCL", RUNTIME_OVERHEAD, "fixed")
    n = 2 * sequences_per_forward(2 * length, math.inf if micro_tokens else 1, micro_tokens)
    reference = Job("dpo_train: reference", tuple(
        _state_terms(s, z, t.world, b, t.freeze_vision, gathered=True, kl_coef=0.0)
        + _forward_terms(s, b, attn, 2, length, completion, t.patches, t.checkpointing, t.chunk,
                         grad=False, freeze_vision=t.freeze_vision)
        + [Term("vision tower: a block's working set (no grad)", t.patches * vision_block_saved_bytes(s, b),
                f"{t.patches} patches x {vision_block_saved_bytes(s, b)} B"), overhead]))
    update = Job("dpo_train: update", tuple(
        _state_terms(s, z, t.world, b, t.freeze_vision, gathered=False, kl_coef=0.0)
        + _forward_terms(s, b, attn, n, length, completion, t.patches, t.checkpointing, t.chunk,
                         grad=True, freeze_vision=t.freeze_vision)
        + [overhead]))
    return [reference, update]


def job_setup(model_config: dict, job: dict, world: int, attn: str | None, freeze_vision: bool
              ) -> tuple[ModelShape, TrainSetup]:
    """A training job's model shape and setup, from its loaded model's config (``config.to_dict()``)
    and its --config (``asdict`` of a GRPOJob or DPOJob); prompts at the media budget's worst case."""
    s = _shape_from_json(model_config)
    vis_tokens, patches = video_tokens(job["media"], s)
    train = job["train"]
    return s, TrainSetup(DTYPE_BYTES[job["dtype"]], attn, world, train["gradient_checkpointing"],
                         train["logprob_chunk"], TEXT_TOKENS + vis_tokens, patches, freeze_vision)


def grpo_job_plan(model_config: dict, job: dict, world: int, attn: str | None, gpu_bytes: float | None = None,
                  vllm: bool = False) -> Callable[[Zero], list[Job]]:
    """A grpo_train job's phases under a given engine, from its model's config and its --config (as
    dicts); with ``vllm`` (the rollouts' engine colocated) its share of a GPU of ``gpu_bytes``."""
    g = job["grpo"]
    s, t = job_setup(model_config, job, world, attn, g["freeze_vision"])
    engine = vllm_terms(g["vllm"], s, t.dtype_bytes, gpu_bytes / GIB) if vllm and gpu_bytes else None
    return lambda z: grpo_jobs(s, t, z, g["rollouts_per_query"], g["max_new_tokens"], g["micro_batch"],
                               g["micro_batch_tokens"], g["kl_coef"], engine)


def dpo_job_plan(model_config: dict, job: dict, world: int, attn: str | None,
                 completion: int) -> Callable[[Zero], list[Job]]:
    """A dpo_train job's phases under a given engine; ``completion``: its pairs' longest side in tokens."""
    s, t = job_setup(model_config, job, world, attn, job["dpo"]["freeze_vision"])
    return lambda z: dpo_jobs(s, t, z, completion, job["dpo"]["micro_batch_tokens"])


def training_jobs(config: dict, settings: Settings) -> dict:
    """{rule: (jobs_at(zero), the ZeroChoice of ``zero_config: auto`` or None)} of a merged config's
    training jobs (grpo_train, dpo_train): the phases of each under a given engine."""
    s = model_shape(config, settings.shape)
    grpo, dpo, train = config["grpo"], config["dpo"], config["train"]
    vis_tokens, patches = video_tokens(config["media"], s, settings.seconds, settings.frame_size)

    def setup(world: int, freeze: bool) -> TrainSetup:
        return TrainSetup(DTYPE_BYTES[config["dtype"]], _attn(config, settings), world,
                          bool(train.get("gradient_checkpointing", False)), int(train.get("logprob_chunk", 256)),
                          settings.text_tokens + vis_tokens, patches, freeze)

    g = setup(settings.gpus or world_size(config, "grpo_train"), grpo.get("freeze_vision", True))
    # DPO forwards chosen + rejected of a pair together; a reflection pair's chosen side is a wrong
    # rollout's reasoning, the cue and a right rollout's reasoning and answer: up to twice a rollout.
    d = setup(world_size(config, "dpo_train"), dpo.get("freeze_vision", True))
    engine = (vllm_terms(grpo.get("vllm") or {}, s, DTYPE_BYTES[config["dtype"]], settings.gpu_gb)
              if vllm_rollouts(config, settings) else None)
    jobs_at = {
        "grpo_train": lambda z: grpo_jobs(s, g, z, grpo["rollouts_per_query"], grpo["max_new_tokens"],
                                          grpo["micro_batch"], grpo.get("micro_batch_tokens"), grpo.get("kl_coef", 0.0),
                                          engine),
        "dpo_train": lambda z: dpo_jobs(s, d, z, 2 * grpo["max_new_tokens"] + 16, dpo.get("micro_batch_tokens")),
    }
    auto = train["engine"] == "deepspeed" and train["zero_config"] == AUTO
    return {rule: (at, choose_zero_config(at, settings.gpu_gb * GIB, settings.margin) if auto else None)
            for rule, at in jobs_at.items()}


def plan(config: dict, settings: Settings = Settings()) -> list[Job]:
    """Every GPU job's per-GPU memory terms for a merged config (a training job under the ZeRO stage
    ``zero_config: auto`` picks for it on these GPUs)."""
    s = model_shape(config, settings.shape)
    b = DTYPE_BYTES[config["dtype"]]
    attn = _attn(config, settings)
    overhead = Term("CUDA context, cuBLAS, NCCL", RUNTIME_OVERHEAD, "fixed")
    kv = kv_bytes_per_token(s, b)
    jobs = []
    for jobs_at, choice in training_jobs(config, settings).values():
        jobs += jobs_at(zero_setup(config, choice.stage if choice else None))

    ev = config["eval"]
    e_tokens, e_patches = video_tokens(eval_media(config), s, settings.seconds, settings.frame_size)
    e_prompt = settings.text_tokens + e_tokens
    batch, e_new = ev.get("batch_size", 1), ev["max_new_tokens"]
    p_all = text_params(s) + vision_params(s)
    e_terms = [
        Term("weights", b * p_all, f"{b} B x {_g(p_all)} params"),
        Term("KV cache", batch * (e_prompt + e_new) * kv, f"{batch} x ({e_prompt} + {e_new}) tok x {kv} B"),
        # batch_generate: the padded input embeddings, held through the prefill, and each prompt's
        # cached vision features (at most as many rows)
        Term("input embeddings + vision features", 2 * batch * e_prompt * b * s.hidden,
             f"2 x {batch} x {e_prompt} x {b * s.hidden} B"),
        Term("prefill: one layer's working set", batch * e_prompt * layer_nograd_bytes(s, b, attn, e_prompt),
             f"{batch} x {e_prompt} tok x {layer_nograd_bytes(s, b, attn, e_prompt)} B"),
        Term("vision tower: a block's working set (no grad)", e_patches * vision_block_saved_bytes(s, b),
             f"{e_patches} patches x {vision_block_saved_bytes(s, b)} B"),
        Term("decoding logits", batch * s.vocab * 6 * 4, f"{batch} x {s.vocab} x 6 x 4 B"),
        overhead,
    ]
    jobs.append(Job("eval_generate (hf)", tuple(e_terms)))
    return jobs


def describe(config: dict, settings: Settings = Settings()) -> list[str]:
    """The header lines: model, media, lengths and engine the plan assumed."""
    s = model_shape(config, settings.shape)
    train = config["train"]
    if train["engine"] != "deepspeed":
        engine = "engine torch"
    elif train["zero_config"] == AUTO:
        engine = "engine deepspeed, zero_config auto: " + ", ".join(
            f"{rule} ZeRO-{c.stage} ({c.reason})" for rule, (_, c) in training_jobs(config, settings).items())
    else:
        engine = f"engine deepspeed ZeRO-{zero_setup(config).stage}"
    t, p = video_tokens(config["media"], s, settings.seconds, settings.frame_size)
    et, ep = video_tokens(eval_media(config), s, settings.seconds, settings.frame_size)
    return [
        f"model {config['base_model']}: {_g(text_params(s))} text + {_g(vision_params(s))} vision params; "
        f"{config['dtype']}; attention {_attn(config, settings) or 'sdpa (default)'}",
        f"train video: {t} tokens ({p} patches) + {settings.text_tokens} text; eval video: {et} tokens "
        f"({ep} patches) + {settings.text_tokens} text",
        engine,
        f"gradient checkpointing {bool(train.get('gradient_checkpointing', False))}; "
        f"logprob_chunk {train.get('logprob_chunk', 256)}; grpo.micro_batch {config['grpo']['micro_batch']}, "
        f"micro_batch_tokens {config['grpo'].get('micro_batch_tokens')}; dpo.micro_batch_tokens "
        f"{config['dpo'].get('micro_batch_tokens')}; eval.batch_size {config['eval'].get('batch_size', 1)}",
        f"GPU {settings.gpu_gb:g} GiB, margin {settings.margin:.0%}: budget {settings.budget / GIB:.1f} GiB per GPU",
        _rollouts_line(config, s, settings, settings.text_tokens + t),
    ]


def _rollouts_line(config: dict, s: ModelShape, settings: Settings, prompt: int) -> str:
    grpo = config["grpo"]
    said = f"grpo.rollout_backend {grpo.get('rollout_backend', 'hf')}" + (
        f", --rollouts {settings.rollouts}" if settings.rollouts != "config" else "")
    if not vllm_rollouts(config, settings):
        return f"grpo rollouts: our HF sampler ({said})"
    b = DTYPE_BYTES[config["dtype"]]
    awake, asleep = vllm_terms(grpo.get("vllm") or {}, s, b, settings.gpu_gb)
    room, per_rollout = awake[1].bytes, (prompt + grpo["max_new_tokens"]) * kv_bytes_per_token(s, b)
    line = (f"grpo rollouts: a colocated vLLM engine ({said}; --rollouts hf plans the fallback): at most "
            f"{room / GIB:.1f} GiB for its KV cache, {room // per_rollout:.0f} rollouts of {prompt} + "
            f"{grpo['max_new_tokens']} tokens at once")
    if asleep[0].bytes == VLLM_ASLEEP:
        procs = resources(config, "grpo_train").get("procs_per_node", 1)
        line += (f"; asleep, its weights wait in host memory: {awake[0].bytes / GIB:.1f} GiB per rank, "
                 f"{procs * awake[0].bytes / GIB:.0f} GiB per node of {procs}")
    return line


def table(jobs: list[Job], settings: Settings) -> str:
    lines = []
    width = max(len(t.name) for j in jobs for t in j.terms)
    for job in jobs:
        ok = job.total <= settings.budget
        lines.append(f"\n{job.name}")
        for t in job.terms:
            lines.append(f"  {t.name:<{width}}  {t.bytes / GIB:8.2f} GiB   {t.formula}")
        lines.append(f"  {'total':<{width}}  {job.total / GIB:8.2f} GiB   "
                     f"{'fits' if ok else 'DOES NOT FIT'} ({job.total / (settings.gpu_gb * GIB):.0%} of the GPU)")
    return "\n".join(lines)


def not_fitting(jobs: list[Job], settings: Settings) -> list[Job]:
    return [j for j in jobs if j.total > settings.budget]
