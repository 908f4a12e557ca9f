"""One typed config per stage (warm-up, GRPO, verifier, DPO, evaluation) and what each job runs with.

A class mirrors a section of config.yaml and is built by ``from_config``, which refuses a key it does
not know and a key it needs, naming them. The sections travel to the jobs as JSON: a key lost on the
way (a misspelt override, a key the rule added for someone else) would otherwise change nothing and
say nothing. schemas/config.schema.yaml still checks the whole file, values and ranges, at parse time;
here a field's type is checked, not its range.

A key that belongs to another consumer is a field too, documented as such (``dpo.min_pairs`` is read
by the workflow's DPO gate, ``verifier.judge`` by veripo.verify.judges, ``train.master_port`` by the
launcher), so the object is the whole section and ``asdict`` of it is the whole effective setting:
each job writes that to its settings.json, and resumes compare it.

Every field carries its help in ``field(metadata={"help": ...})`` (see ``doc``). Standard library
only (and veripo.config): the Snakefile may build these while it parses.
"""
from __future__ import annotations

import math
import os
import types
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from veripo.config import ConfigError, grpo_stage
from veripo.jsonio import write_json


def doc(help: str, **kwargs) -> Any:
    """A dataclass field with its help text (``default=`` / ``default_factory=`` as for ``field``)."""
    return field(metadata={"help": help}, **kwargs)


_EXPECTED = {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list",
             dict: "a mapping"}


def _key(where: str, name: object) -> str:
    return f"{where}.{name}" if where else str(name)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint``; nested sections built from their mappings."""
    origin, args = get_origin(hint), get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_config(value, where)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ConfigError(f"config key '{where}': expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is list:
        _expect(isinstance(value, list), list, value, where)
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _expect(isinstance(value, dict), dict, value, where)
        return {k: _convert(v, args[1], _key(where, k)) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float:
        # a bool is an int to Python, and NaN or inf would pass as a learning rate
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    _expect(ok, hint, value, where)
    return value


def _expect(ok: bool, hint: type, value: Any, where: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{where}': expected {_EXPECTED.get(hint, hint.__name__)}, got {value!r}")


class Section:
    """Strict construction from a config section (a mapping of key to value)."""

    SECTION: ClassVar[str] = ""  # its config key, for messages

    @classmethod
    def from_config(cls, section: dict, where: str | None = None):
        """The section as this class; ConfigError naming every unknown key, then every missing one,
        then the first value of the wrong type."""
        where = cls.SECTION if where is None else where
        if not isinstance(section, dict):
            raise ConfigError(f"config key '{where or '<top level>'}': expected a mapping, got {section!r}")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in section if k not in names]
        if unknown:
            keys = ", ".join(f"'{_key(where, k)}'" for k in unknown)
            raise ConfigError(f"unknown config key {keys}: {cls.__name__} takes {', '.join(names)}")
        missing = [f.name for f in fields(cls)
                   if f.name not in section and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            keys = ", ".join(f"'{_key(where, k)}'" for k in missing)
            raise ConfigError(f"missing config key {keys} ({cls.__name__})")
        hints = get_type_hints(cls)
        return cls(**{k: _convert(v, hints[k], _key(where, k)) for k, v in section.items()})


# Shared by every job that loads the policy ------------------------------------------------------

# config data.max_question_chars's default: ~25x the longest benchmark question (VSI-Bench's route
# planning, ~330 characters) and ~2k text tokens, a quarter of the 7B's 8k prompt budget beside 16 frames'
# visual tokens; a longer question is a scraping accident (one of 98k characters allocated 43 GB in GRPO).
MAX_QUESTION_CHARS = 8192

@dataclass(frozen=True, kw_only=True)
class MediaConfig(Section):
    """How a video (or image) is sampled before the vision encoder sees it."""

    SECTION: ClassVar[str] = "media"
    fps: float = doc("frames per second sampled from a video")
    min_frames: int = doc("fewest frames sampled from a video, however short")
    max_frames: int = doc("most frames sampled from a video, however long")
    min_pixels: int = doc("smallest frame area (pixels) after resizing")
    max_pixels: int = doc("largest frame area (pixels) after resizing: bounds the visual tokens per frame")
    frame_cache: str | None = doc("folder of decoded frames kept on disk, keyed by the video's sha256 and the "
                                  "frame sampling (veripo/media/frame_cache.py), shared by every job that "
                                  "decodes a video; None: decode every time", default=None)
    frame_cache_max_bytes: int | None = doc("size bound of frame_cache (bytes): each write evicts the least "
                                            "recently used entries beyond it; None: no bound", default=None)


@dataclass(frozen=True, kw_only=True)
class PromptTemplates(Section):
    """The authors' prompt templates; ``{Question}`` is replaced by the question."""

    SECTION: ClassVar[str] = "prompts"
    option: str = doc("template of multiple-choice questions (answer: an option letter)")
    number: str = doc("template of every other question (answer: a number or an expression)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """How training jobs run (GRPO, DPO)."""

    SECTION: ClassVar[str] = "train"
    engine: Literal["deepspeed", "torch"] = doc("deepspeed (ZeRO; any number of processes, CPU or GPU) or "
                                                "torch (plain AdamW, one process)")
    zero_config: str = doc("DeepSpeed JSON (ZeRO stage, offload), relative to the repository or absolute; "
                           "read with engine deepspeed. auto: per job, configs/deepspeed/zero2.json where the "
                           "memory plan (veripo/train/memory_plan.py) says the job fits its GPUs with margin at "
                           "ZeRO-2, else zero3.json; the job logs its choice and writes it to settings.json")
    master_port: int = doc("rendezvous port on the first node: read by the launcher (veripo/train/launch.py), "
                           "not by the loops")
    gradient_checkpointing: bool = doc("recompute each decoder layer's activations in the backward instead of "
                                       "storing them (the 7B needs it: see speed/memory_plan.py)", default=False)
    logprob_chunk: int = doc("completion tokens per LM-head chunk when scoring log-probs: full-vocabulary "
                             "logits exist for this many tokens at a time, never for whole sequences",
                             default=256)


@dataclass(frozen=True, kw_only=True)
class PolicySetup(Section):
    """What every job that loads the policy gets besides its stage's own section."""

    dtype: Literal["float32", "bfloat16", "float16"] = doc("torch dtype the policy is loaded and trained in")
    attn_implementation: str | None = doc("attention implementation passed to from_pretrained "
                                          "(None: transformers' default)", default=None)
    prompts: PromptTemplates = doc("prompt templates")
    media: MediaConfig = doc("video/image sampling of training and rollouts")
    train: TrainConfig = doc("training engine: read by GRPO and DPO; the warm-up trains in one process with "
                             "plain AdamW and the verifier's sampling pass does not train")
    max_question_chars: int = doc("config data.max_question_chars: the longest question the job's query file "
                                  "may hold, checked when it is loaded, before the model", default=MAX_QUESTION_CHARS)


# Warm-up ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WarmupConfig(Section):
    """Supervised warm-up of the tiny base on synthetic <think>/<answer> traces."""

    SECTION: ClassVar[str] = "warmup"
    steps: int = doc("optimiser steps (AdamW, gradient norm clipped at 1)")
    batch_size: int = doc("queries per step, each with a freshly drawn trace")
    lr: float = doc("learning rate")
    seed: int = doc("seeds the choice of queries and traces (and torch, before the model loads)")
    trace_mix: dict[str, float] = doc("relative share of each trace kind: right, wrong, inconsistent, "
                                      "repetitive (the imperfect kinds make the base imperfect on purpose)")


@dataclass(frozen=True, kw_only=True)
class WarmupJob(PolicySetup):
    """The base_warmup job's --config."""

    warmup: WarmupConfig = doc("the warm-up's hyper-parameters")


# GRPO ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GRPOStage(Section):
    """The GRPO keys that differ between stages: ``grpo.activation`` and each entry of ``grpo.per_iteration``."""

    lr: float = doc("learning rate")
    global_batch: int = doc("sequences (rollouts) per optimiser step")
    rollout_batch: int = doc("queries sampled per round (divisible by the number of training processes)")
    epochs: int = doc("passes over the stage's queries")


_SCHEDULE = ("activation", "per_iteration")
# grpo.vllm.max_logprob_gap when the key is absent (config.yaml sets it): nats, on the largest gap of any
# sampled token of a round. A synced fp32 engine shows at most ~4e-4 (the tiny chain on CPU); one left
# on old weights 15 nats. bf16 engines differ more token by token: raise it for them.
MAX_LOGPROB_GAP = 1.0


@dataclass(frozen=True, kw_only=True)
class GRPOConfig(Section):
    """One GRPO stage: the ``grpo`` section with its stage's entry merged in.

    config.yaml holds the keys shared by all stages plus the schedule, ``activation`` (iteration 0,
    text/image) and ``per_iteration`` (entry k-1 for iteration k, the last for later ones), each a
    GRPOStage. ``from_config`` resolves a section that holds the schedule for the ``iteration`` it is
    given, as veripo.config.grpo_stage does for the rules, and takes a resolved one as it is."""

    SECTION: ClassVar[str] = "grpo"
    rollouts_per_query: int = doc("G: rollouts sampled per query, the group whose rewards are normalised")
    rollout_backend: Literal["hf", "vllm", "auto"] = doc(
        "who samples the rollouts: our HF sampler, or a colocated vLLM engine given the new weights before "
        "every round (veripo/model/vllm_rollouts.py); auto: vllm when it imports and a GPU is present, else hf "
        "(veripo/model/backend.py; the job logs and writes to settings.json which ran)", default="hf")
    vllm: dict = doc("vllm.LLM arguments of the rollout engine (gpu_memory_utilization: its share of the GPU "
                     "next to the trainer; enable_sleep_mode: on by default on CUDA; max_model_len; "
                     "enforce_eager; ...), plus max_logprob_gap, ours, not "
                     "the engine's: the largest |vLLM's log-prob - the trainer's| of a sampled token a round may "
                     "show before the job stops (None: no bound; absent: MAX_LOGPROB_GAP), and kv_cache_gib, "
                     "the engine's KV cache (veripo/model/vllm_memory.py: absent, from the job's mem_mb); see "
                     "engine_args",
                     default_factory=dict)
    temperature: float = doc("sampling temperature; the ratio's log-probs are taken at it too")
    top_p: float = doc("nucleus sampling threshold (1: off)")
    max_new_tokens: int = doc("longest rollout; a longer one is cut and marked truncated")
    clip_eps: float = doc("PPO clip range of the probability ratio")
    kl_coef: float = doc("weight of the k3 KL penalty to a frozen copy of the entering model (0: no copy)")
    adv_eps: float = doc("added to the group's reward standard deviation before dividing by it")
    format_weight: float = doc("format reward of a well-formed rollout (accuracy reward is 0 or 1)")
    freeze_vision: bool = doc("keep the vision tower frozen")
    micro_batch: int = doc("most rollouts per forward/backward (all of one group: they share the prompt)")
    micro_batch_tokens: int | None = doc("most prompt + completion tokens per forward/backward: a forward takes "
                                         "as many of a group's rollouts as fit (rollouts x (prompt + longest "
                                         "completion among them)), within micro_batch; a rollout over it alone "
                                         "gets a forward of its own. None: micro_batch rollouts", default=None)
    grad_clip: float = doc("gradient norm clip")
    weight_decay: float = doc("AdamW weight decay")
    seed: int = doc("seeds query order (per epoch), the split of rounds into steps and, with the stage and "
                    "iteration, the sampling (per rank, or per round and query with vLLM: veripo/model/seeds.py)")
    checkpoint_every: int = doc("rounds between step checkpoints (resume after a kill; not part of the trajectory)")
    lr: float = doc("learning rate (from the stage's schedule entry)")
    global_batch: int = doc("sequences per optimiser step (from the stage's schedule entry)")
    rollout_batch: int = doc("queries per round (from the stage's schedule entry)")
    epochs: int = doc("passes over the queries (from the stage's schedule entry)")

    @classmethod
    def from_config(cls, section: dict, where: str | None = None, iteration: int | None = None) -> GRPOConfig:
        """``section`` resolved (as grpo_train gets it), or as in config.yaml with ``iteration`` naming the stage."""
        where = cls.SECTION if where is None else where
        if isinstance(section, dict) and any(k in section for k in _SCHEDULE):
            if iteration is None:
                raise ConfigError(f"config key '{where}' holds the stage schedule ({', '.join(_SCHEDULE)}): "
                                  f"an iteration is needed to pick the stage")
            section = _resolve_schedule(section, where, iteration)
        return super().from_config(section, where)

    def __post_init__(self) -> None:
        if "max_logprob_gap" in self.vllm:
            bound = _convert(self.vllm["max_logprob_gap"], float | None, "grpo.vllm.max_logprob_gap")
            if bound is not None and bound < 0:
                raise ConfigError(f"config key 'grpo.vllm.max_logprob_gap': expected a number >= 0 or null, "
                                  f"got {bound!r}")

    def engine_args(self) -> dict:
        """``vllm`` without max_logprob_gap: what the rollout engine is built with (kv_cache_gib is read and
        dropped where the engine is built)."""
        return {k: v for k, v in self.vllm.items() if k != "max_logprob_gap"}

    def max_logprob_gap(self) -> float | None:
        """The bound on a round's largest vLLM-vs-trainer log-prob gap (nats), None for none."""
        return self.vllm.get("max_logprob_gap", MAX_LOGPROB_GAP)


def _resolve_schedule(section: dict, where: str, iteration: int) -> dict:
    for key in _SCHEDULE:
        if key not in section:
            raise ConfigError(f"missing config key '{_key(where, key)}' (GRPOConfig's stage schedule)")
    for name in (f.name for f in fields(GRPOStage)):
        if name in section:
            raise ConfigError(f"config key '{_key(where, name)}' is set per stage: set it in "
                              f"{_key(where, 'activation')} and {_key(where, 'per_iteration')}")
    GRPOStage.from_config(section["activation"], _key(where, "activation"))
    entries = section["per_iteration"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config key '{_key(where, 'per_iteration')}': expected a non-empty list, got {entries!r}")
    for i, entry in enumerate(entries):
        GRPOStage.from_config(entry, f"{_key(where, 'per_iteration')}[{i}]")
    return grpo_stage({"grpo": section}, iteration)


@dataclass(frozen=True, kw_only=True)
class GRPOJob(PolicySetup):
    """The grpo_train job's --config."""

    grpo: GRPOConfig = doc("the stage's GRPO hyper-parameters, resolved for its iteration")


# Verifier -----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class VerifierRollouts(Section):
    """Which rollouts the verifier judges."""

    SECTION: ClassVar[str] = "verifier.rollouts"
    source: Literal["logged", "fresh"] = doc("logged: the GRPO stage's own (every epoch's); fresh: a new "
                                             "sampling pass from the stage's checkpoint (rule verifier_sample; "
                                             "the workflow picks the verifier's input by it)")
    rollouts_per_query: int = doc("fresh: rollouts sampled per query")
    temperature: float = doc("fresh: sampling temperature (top_p, max_new_tokens, format_weight as in grpo)")
    seed: int = doc("fresh: seeds the sampling, with the iteration (veripo/model/seeds.py)")


@dataclass(frozen=True, kw_only=True)
class VerifierConfig(Section):
    """The Rollout-Aware Verifier's thresholds, its judge and the rollouts it judges."""

    SECTION: ClassVar[str] = "verifier"
    min_think_tokens: int = doc("length: a think of fewer tokens (policy tokenizer) fails")
    ngram: int = doc("repetition: an n-gram of this many think tokens ...")
    max_ngram_repeats: int = doc("... seen this many times fails")
    max_compression_ratio: float = doc("repetition: a think whose zlib ratio exceeds this fails ...")
    min_text_for_compression: int = doc("... when it has at least this many characters")
    numeric_right: float = doc("accuracy of numeric answers: MRA at or above is right ...")
    numeric_wrong: float = doc("... at or below is wrong, in between partial (never chosen nor rejected)")
    judge: dict[str, Any] = doc("the consistency judge's spec (backend, model, prompt, ...): read and checked by "
                                "veripo.verify.judges.make_judge, keys as config.yaml documents them")
    rollouts: VerifierRollouts = doc("which rollouts are judged, and how a fresh pass samples them")


@dataclass(frozen=True, kw_only=True)
class VerifierSampleJob(PolicySetup):
    """The verifier_sample job's --config: a fresh pass sampled as the GRPO stage samples."""

    grpo: GRPOConfig = doc("the GRPO stage whose checkpoint is sampled (top_p, max_new_tokens, format_weight)")
    rollouts: VerifierRollouts = doc("the pass's group size, temperature and seed")


@dataclass(frozen=True, kw_only=True)
class PairsConfig(Section):
    """How verdicts become chosen/rejected pairs (rule dpo_build_pairs)."""

    SECTION: ClassVar[str] = "pairs"
    kinds: list[Literal["consistency", "penalty", "reflection"]] = doc("pair kinds, taking turns in this order "
                                                                       "within a query")
    max_per_query: int = doc("most pairs per query")
    rotate_kinds: bool = doc("start each query's turn at a kind picked by a hash of its id (false: the first)")
    reflection_cue: str | None = doc("reflection pairs: joins a wrong rollout's reasoning to a right one's "
                                     "(required when kinds has reflection)", default=None)


# DPO ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class DPOConfig(Section):
    """DPO on the verifier's pairs; the reference is the GRPO model entering the stage."""

    SECTION: ClassVar[str] = "dpo"
    beta: float = doc("DPO temperature: loss = -log sigmoid(beta * margin)")
    lr: float = doc("learning rate")
    global_batch: int = doc("pairs per optimiser step")
    epochs: int = doc("passes over the training pairs")
    nll_coef: float = doc("weight of the chosen side's per-token NLL added to the loss (0: none)")
    grad_clip: float = doc("gradient norm clip")
    freeze_vision: bool = doc("keep the vision tower frozen")
    weight_decay: float = doc("AdamW weight decay")
    seed: int = doc("seeds pair order (per epoch) and the held-out split")
    checkpoint_every: int = doc("steps between step checkpoints (not part of the trajectory)")
    heldout_fraction: float = doc("share of the queries whose pairs are kept out of training and measured "
                                  "before and after (heldout.json)")
    micro_batch_tokens: int | None = doc("most prompt + completion tokens per forward/backward: a forward takes "
                                         "as many pairs of one query as fit (2 x pairs x (prompt + longest side)); "
                                         "a pair over it alone gets a forward of its own. None: one pair per "
                                         "forward", default=None)
    min_pairs: int = doc("read by the workflow's DPO gate (veripo/verify/gate.py), not by the loop: fewer "
                         "pairs than this stop the workflow or skip the stage ...")
    on_too_few_pairs: Literal["stop", "skip"] = doc("... as this says (gate, not loop): skip saves the GRPO "
                                                    "model as the DPO model")


@dataclass(frozen=True, kw_only=True)
class DPOJob(PolicySetup):
    """The dpo_train job's --config."""

    dpo: DPOConfig = doc("DPO hyper-parameters")


# Evaluation ---------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GenerationConfig(Section):
    """How a benchmark's answers are generated."""

    SECTION: ClassVar[str] = "generation"
    temperature: float = doc("sampling temperature (0: greedy)")
    top_p: float = doc("nucleus sampling threshold (1: off)")
    repetition_penalty: float = doc("repetition penalty (1: off)")
    max_new_tokens: int = doc("longest answer")
    backend: Literal["hf", "vllm", "auto"] = doc("hf: transformers, batched; vllm: vLLM (CUDA only); auto: "
                                                 "vllm when it imports and a GPU is present, else hf", default="hf")
    batch_size: int = doc("questions per generation call", default=1)
    vllm: dict[str, Any] = doc("keyword arguments of vllm.LLM (max_model_len, gpu_memory_utilization, ...), and "
                               "kv_cache_gib, the engine's KV cache (veripo/model/vllm_memory.py: absent, from the "
                               "job's mem_mb)",
                               default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig(Section):
    """One benchmark: its question file, its videos, and what it overrides of ``eval.media``."""

    questions: str = doc("the benchmark's question file (its own format)")
    video_root: str = doc("folder its records' video paths are relative to")
    fps: float | None = doc("overrides eval.media.fps (TOMATO: 4)", default=None)
    max_frames: int | None = doc("overrides eval.media.max_frames", default=None)
    min_pixels: int | None = doc("overrides eval.media.min_pixels", default=None)
    max_pixels: int | None = doc("overrides eval.media.max_pixels", default=None)
    skip_missing_videos: bool = doc("false: a missing or unreadable video stops the job before generating; "
                                    "true: those questions are skipped and counted", default=False)


MEDIA_OVERRIDES = ("fps", "max_frames", "min_pixels", "max_pixels")


@dataclass(frozen=True, kw_only=True)
class EvalConfig(GenerationConfig):
    """The ``eval`` section: generation settings shared by all benchmarks, and the benchmarks."""

    SECTION: ClassVar[str] = "eval"
    media: MediaConfig = doc("video sampling, unless a benchmark overrides part of it")
    benchmarks: dict[str, BenchmarkConfig] = doc("name -> question file, video folder and overrides")
    paired_baseline: str | None = doc("checkpoint every score file's paired difference is taken against "
                                      "(base or iter<K> of the same chain); null: none", default=None)

    def generation(self) -> GenerationConfig:
        return GenerationConfig(**{f.name: getattr(self, f.name) for f in fields(GenerationConfig)})

    def media_of(self, name: str) -> MediaConfig:
        """``media`` with benchmark ``name``'s overrides applied."""
        bench = self.benchmarks[name]
        overrides = {k: getattr(bench, k) for k in MEDIA_OVERRIDES if getattr(bench, k) is not None}
        return MediaConfig(**{**asdict(self.media), **overrides})


@dataclass(frozen=True, kw_only=True)
class EvalJob(Section):
    """The eval_generate job's --config: everything one benchmark's generation needs besides paths."""

    dtype: Literal["float32", "bfloat16", "float16"] = doc("torch dtype of the evaluated model")
    attn_implementation: str | None = doc("attention implementation passed to from_pretrained", default=None)
    prompts: PromptTemplates = doc("prompt templates")
    generation: GenerationConfig = doc("sampling, backend and batch size")
    media: MediaConfig = doc("video sampling: eval.media with the benchmark's overrides")
    skip_missing_videos: bool = doc("skip (and count) questions whose video is missing or unreadable")

    @classmethod
    def of(cls, config: dict, name: str) -> EvalJob:
        """Benchmark ``name``'s job, from the whole (validated) config."""
        ev = EvalConfig.from_config(config["eval"])
        return cls(dtype=config["dtype"], attn_implementation=config.get("attn_implementation"),
                   prompts=PromptTemplates.from_config(config["prompts"]), generation=ev.generation(),
                   media=ev.media_of(name), skip_missing_videos=ev.benchmarks[name].skip_missing_videos)


# What a loop is handed besides its stage config ------------------------------------------------------

@dataclass(frozen=True)
class PromptSetup:
    """What turns a query into the policy's input, as the encoders read it (plain mappings)."""

    templates: dict = doc("prompt templates by answer kind (option, number)")
    media: dict = doc("video/image sampling (MediaConfig's fields)")

    @classmethod
    def of(cls, job: PolicySetup) -> PromptSetup:
        return cls(asdict(job.prompts), asdict(job.media))


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """Which job a training loop runs as and where: not hyper-parameters, so no stage config holds them."""

    stage: str = doc("names the job in rollouts, metrics and progress: activation | video (GRPO), dpo")
    iteration: int | None = doc("the workflow iteration the job belongs to (None: not known to the job)",
                                default=None)
    engine: str = doc("optimiser engine: torch or deepspeed (TrainConfig.engine)", default="torch")
    zero_config: str | None = doc("DeepSpeed JSON with engine deepspeed", default=None)
    dtype: str = doc("dtype of the weights (DeepSpeed's bf16/fp16 switch)", default="float32")
    dist: Any = doc("this process's veripo.train.distributed.Dist (rank, world, local rank); None: one process",
                    default=None)
    gradient_checkpointing: bool = doc("TrainConfig.gradient_checkpointing", default=False)
    logprob_chunk: int | None = doc("TrainConfig.logprob_chunk (None: whole sequences at once)", default=None)

    @classmethod
    def of(cls, job: PolicySetup, dist: Any, stage: str, iteration: int | None = None) -> RunContext:
        return cls(stage=stage, iteration=iteration, engine=job.train.engine, zero_config=job.train.zero_config,
                   dtype=job.dtype, dist=dist, gradient_checkpointing=job.train.gradient_checkpointing,
                   logprob_chunk=job.train.logprob_chunk)


def settings_record(config: Any, inputs: dict[str, str], **context: Any) -> dict:
    """settings.json's content: the inputs' paths, the job's context (world size, iteration, ...) and every
    field of its config object."""
    return {"inputs": dict(inputs), **context, "config": asdict(config)}


def write_settings(path: str, config: Any, inputs: dict[str, str], **context: Any) -> None:
    """Write ``settings_record`` to ``path`` atomically."""
    write_json(path, settings_record(config, inputs, **context))


def settings_path(main_output: str, name: str = "settings.json") -> str:
    """settings.json beside a job's main output (a file or a model directory)."""
    return os.path.join(os.path.dirname(os.path.normpath(main_output)), name)
