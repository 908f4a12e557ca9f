"""The steps of the GPU check, one per process (run.sh runs each under its own time limit).

    python speed/gpu/steps.py STEP --results DIR --work DIR  (STEP: preflight fwd_bwd sampler grpo dpo engines)

Environment: SHAPE (3b | 7b | small | tiny; default 3b), DEVICE (cuda | cpu; default cuda), TRAIN_LAYERS
(text layers of the GRPO/DPO model; default the shape's), LOGPROB_CHUNK, and the sizes run.sh lists.
bf16 on cuda, fp32 on cpu. Each step writes
DIR/STEP.json: what it measured, and per part either its numbers or the error it hit; the process exits
1 when a part failed. Every call goes through the project's code (veripo.model.policy, batch_generate,
veripo.train.grpo/dpo and their TrainEngine); only the model, the video and the GRPO reward are
stand-ins (fixture.py, and ``alternating_reward`` below).
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from veripo.media.torchvision_cpu import apply as _tv_apply  # noqa: E402

_tv_apply()

import torch  # noqa: E402

import fixture  # noqa: E402
import measure  # noqa: E402
from measure import Result, Timer  # noqa: E402

PROBE = "model.language_model.layers.0.mlp.down_proj.weight"  # a trained weight
VISION_PROBE = "model.visual.blocks.0.mlp.down_proj.weight"  # frozen in GRPO and DPO


@dataclass(frozen=True)
class Run:
    """What every step is told: the shape, where it runs, and its scratch folder."""

    shape: str
    device: torch.device
    work: Path

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.gpu else torch.float32

    def size(self, gpu: int, cpu: int) -> int:
        """A knob's value: the real-scale one on a GPU, the dry run's on a CPU."""
        return gpu if self.gpu else cpu

    def env_int(self, name: str, gpu: int, cpu: int) -> int:
        return int(os.environ.get(name) or self.size(gpu, cpu))

    @property
    def logprob_chunk(self) -> int:
        """train.logprob_chunk: the 7B config's on a GPU; on a CPU small enough that the dry run's short
        completions are split into chunks too."""
        return self.env_int("LOGPROB_CHUNK", fixture.logprob_chunk(), 4)


def _policy_inputs(run: Run, shape_name: str, dtype: torch.dtype, layers: int | None = None):
    """(model, processor, record, media) of a check: random model on the device, processor, video query."""
    tok = fixture.build_tokenizer()
    media = fixture.media(run.shape)
    processor = fixture.build_processor(tok, media)
    model = fixture.build_model(fixture.shape(shape_name, layers), tok, run.device, dtype)
    return model, processor, fixture.video_record(run.work, run.shape), media


def _encode(processor, record: dict, media: dict):
    from veripo.model import policy

    return policy.encode_query(processor, record, fixture.templates(), media, None)


def _params(model) -> dict:
    return {"params": sum(p.numel() for p in model.parameters()),
            "params_vision": sum(p.numel() for p in model.model.visual.parameters()),
            "layer_weights": measure.layer_weights(model)}


# --- preflight ------------------------------------------------------------------------------------------

def preflight(run: Run, r: Result) -> None:
    """Versions, the GPU, and whether the carried packages import."""
    import importlib
    import importlib.metadata as md

    with r.part("versions") as out:
        out["python"] = platform.python_version()
        for dist in ("torch", "transformers", "tokenizers", "deepspeed", "av", "pydantic", "torchvision"):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                out[dist] = None
        for mod in ("deepspeed", "av"):
            importlib.import_module(mod)
    with r.part("accelerator") as out:
        out["cuda_available"] = torch.cuda.is_available()
        out["torch_cuda"] = torch.version.cuda
        if run.gpu:
            if not torch.cuda.is_available():
                raise RuntimeError("DEVICE=cuda but torch sees no GPU (DEVICE=cpu SHAPE=tiny runs the dry run)")
            p = torch.cuda.get_device_properties(0)
            out.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                       multiprocessors=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported(),
                       nccl=str(torch.cuda.nccl.version()), peak_bf16_tflops=measure.peak_tflops())
        from deepspeed.accelerator import get_accelerator

        out["deepspeed_accelerator"] = get_accelerator().device_name()
    with r.part("model") as out:
        model, processor, record, media = _policy_inputs(run, run.shape, run.dtype)
        prompt = _encode(processor, record, media)
        out.update(_params(model), prompt_tokens=prompt.length,
                   video_tokens=int((prompt.input_ids == model.config.video_token_id).sum()),
                   video_grid_thw=prompt.media["video_grid_thw"].tolist(), media=media)


# --- forward/backward -----------------------------------------------------------------------------------

def fwd_bwd(run: Run, r: Result) -> None:
    """bf16 forward+backward of ``policy.completion_logprobs`` with the video in the prompt (vision frozen,
    its features cached per query as in training; log-probs in ``train.logprob_chunk`` chunks), gradient
    checkpointing off then on: seconds, tokens/s, MFU, peak memory; and the two log-prob tensors agree."""
    from veripo.model import policy
    from veripo.train.checkpoints import frozen_vision

    n, T = run.env_int("FWD_N", 4, 2), run.env_int("FWD_T", 1024, 16)
    reps = run.size(2, 1)
    model, processor, record, media = _policy_inputs(run, run.shape, run.dtype)
    frozen_vision(model)
    prompt = _encode(processor, record, media)
    g = torch.Generator().manual_seed(0)
    completions = torch.randint(0, len(processor.tokenizer) - 32, (n, T), generator=g)
    mask = torch.ones(n, T, dtype=torch.long)
    mask[n // 2:, T // 2:] = 0  # ragged, as a group's rollouts are
    r.update(_params(model), n=n, completion_tokens=T, prompt_tokens=prompt.length, reps=reps,
             logprob_chunk=run.logprob_chunk)
    flops = 3 * measure.forward_flops(model, n, prompt.length, T)
    logps = {}
    for gc in (False, True):
        with r.part(f"gc_{'on' if gc else 'off'}") as out:
            if gc:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
            measure.reset_peak()
            seconds = []
            for i in range(reps + 1):  # the first pass warms up (kernels, the cached vision features)
                model.zero_grad(set_to_none=True)
                with Timer() as t:
                    lp = policy.completion_logprobs(model, prompt, completions, mask, chunk=run.logprob_chunk)
                    m = mask.to(lp.device, lp.dtype)
                    loss = -(lp * m).sum() / m.sum()
                    loss.backward()
                if i:
                    seconds.append(t.seconds)
            grads = [p.grad.float().norm() for p in model.parameters() if p.grad is not None]
            s = sum(seconds) / len(seconds)
            out.update(seconds=round(s, 4), tokens=n * (prompt.length + T),
                       tokens_per_s=round(n * (prompt.length + T) / s, 1), **measure.rate(flops, s),
                       peak_gib=measure.peak_gib(), loss=float(loss), grad_norm=float(torch.stack(grads).norm()),
                       params_with_grad=len(grads))
            logps[gc] = lp.detach().float().cpu()
            if gc:
                model.gradient_checkpointing_disable()
    if len(logps) == 2:
        r["gc_logprob_max_abs_diff"] = float(((logps[True] - logps[False]).abs() * mask).max())


# --- samplers -------------------------------------------------------------------------------------------

def _hf_greedy(model, prompt, max_new_tokens: int, pad_id: int) -> torch.Tensor:
    """transformers' own greedy ``generate`` on the same processor tensors, vision placeholders suppressed."""
    from veripo.model import policy

    dev = next(model.parameters()).device
    inputs = {"input_ids": prompt.input_ids, "attention_mask": torch.ones_like(prompt.input_ids),
              "mm_token_type_ids": prompt.mm_token_type_ids, **prompt.media}
    inputs = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    from veripo.model.positions import rope_index

    def reference_positions(input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None,
                            second_per_grid_ts=None, attention_mask=None, **_):
        return rope_index(model.config, input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw,
                          second_per_grid_ts, attention_mask)

    # HF's loop on the M-RoPE positions our forwards use (Qwen's reference, veripo/model/positions.py):
    # transformers 5.17's own differ for a video of several frame groups, by design of ours
    model.model.get_rope_index = reference_positions
    try:
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                 suppress_tokens=policy.suppressed_token_ids(model), pad_token_id=pad_id,
                                 temperature=None, top_p=None, top_k=None)
    finally:
        del model.model.get_rope_index
    return out[0, prompt.length:].cpu()


def _compare(hf: torch.Tensor, ours) -> dict:
    mine = ours.tokens[0][ours.mask[0].bool()]
    L = min(len(hf), len(mine))
    same = (hf[:L] == mine[:L]).tolist()
    return {"equal": bool(len(hf) == len(mine) and all(same)), "tokens_hf": len(hf), "tokens_ours": len(mine),
            "first_difference": next((i for i, s in enumerate(same) if not s), None if len(hf) == len(mine) else L),
            "agreement": round(sum(same) / max(1, L), 4)}


def _three_way(model, prompt, steps: int, pad_id: int) -> dict:
    """HF greedy against each of our samplers (``policy.sample`` with its default, CUDA graphs on a GPU, and
    eager); each sampler's failure is recorded beside the others' results, then raised (the part fails)."""
    from veripo.model import batch_generate, policy

    hf = _hf_greedy(model, prompt, steps, pad_id)
    ours = {"policy_sample": lambda: policy.sample(model, prompt, 1, steps, temperature=0.0, pad_id=pad_id),
            "policy_sample_eager": lambda: policy.sample(model, prompt, 1, steps, temperature=0.0, pad_id=pad_id,
                                                         graphs="off"),
            "batch_generate": lambda: batch_generate.generate(model, [prompt], steps, temperature=0.0, pad_id=pad_id)}
    out, errors = {}, []
    for name, run_sampler in ours.items():
        try:
            out[name] = _compare(hf, run_sampler())
        except Exception as exc:  # noqa: BLE001 - recorded, and raised below once all have run
            traceback.print_exc()
            out[name] = {"equal": False, "error": measure.error_text(exc)}
            errors.append(f"{name}: {out[name]['error']}")
    out["tokens_identical"] = all(out[name]["equal"] for name in ours)
    if errors:
        raise SamplerFailed(out, "; ".join(errors))
    return out


class SamplerFailed(RuntimeError):
    def __init__(self, partial: dict, message: str):
        super().__init__(message)
        self.partial = partial


def _fill(out: dict, compare) -> None:
    """``out`` updated with ``compare()``, also with what it had when one sampler failed."""
    try:
        out.update(compare())
    except SamplerFailed as exc:
        out.update(exc.partial)
        raise


def sampler(run: Run, r: Result) -> None:
    """Greedy ``policy.sample`` (CUDA graphs on a GPU, and eager) and ``batch_generate.generate`` against HF
    ``generate``: token-identical in fp32 at small shapes; their agreement in bf16 at the full shape; decode
    ms/step and tok/s of groups of 8, 32 and 64 against the weight-read floor (``_decode_rows``)."""
    groups = [int(g) for g in (os.environ.get("DECODE_G") or ("8,32,64" if run.gpu else "2,4,8")).split(",")]
    steps, decode = run.env_int("SAMPLER_TOKENS", 48, 16), run.env_int("DECODE_TOKENS", 128, 16)
    r.update(greedy_tokens=steps, decode_groups=groups, decode_tokens=decode)
    model = None
    with r.part("identity_fp32") as out:
        small = fixture.small_shape(run.shape)
        model, processor, record, media = _policy_inputs(run, small, torch.float32)
        out["shape"] = small
        _fill(out, lambda: _three_way(model, _encode(processor, record, media), steps,
                                      processor.tokenizer.pad_token_id))
    if run.gpu:
        model = None  # the next part's model replaces it
        measure.reset_peak()
        with r.part("agreement_bf16") as out:
            model, processor, record, media = _policy_inputs(run, run.shape, run.dtype)
            out["shape"] = run.shape
            _fill(out, lambda: _three_way(model, _encode(processor, record, media), steps,
                                          processor.tokenizer.pad_token_id))
    if model is None:
        raise RuntimeError("no model for the decode rows: the part that builds it failed")
    _decode_rows(run, r, model, processor, _encode(processor, record, media), decode, groups)


def _decode_rows(run: Run, r: Result, model, processor, prompt, new_tokens: int, groups: list[int]) -> None:
    """Decode ms/step and tok/s of each group size (one part each), every mode the device has: eager, and
    on CUDA the default (``graphs="auto"``: CUDA graphs). Seeded sampling with no EOS, so every step
    decodes the whole group; per step = (a call decoding ``new_tokens`` - a call decoding 1) / the steps
    in between, so the prefill is left out (on a loaded CPU, where that difference is noise, the whole
    call / its tokens). Next to it, the weight-read floor: the decoder's weights read once per step at the
    card's memory bandwidth (``measure.memory_bandwidth_tbs``), and the KV cache a step reads on average."""
    from veripo.model import decode as decoder
    from veripo.model import policy

    pad = processor.tokenizer.pad_token_id
    model.eval()
    weight_bytes = measure.decoder_weight_bytes(model)
    floor_s = measure.weight_read_seconds(weight_bytes)
    kv_per_token = measure.kv_bytes_per_token(model)
    r.update(decode_weight_bytes=weight_bytes, memory_bandwidth_tbs=measure.memory_bandwidth_tbs(),
             weight_read_ms=None if floor_s is None else round(1000 * floor_s, 3))

    def sample(g: int, tokens: int, seed: int, graphs: str):
        # eos_ids=[-1]: no row stops early, every step decodes the whole group
        return policy.sample(model, prompt, g, tokens, temperature=1.0, eos_ids=[-1], pad_id=pad, graphs=graphs,
                             generator=torch.Generator(device=run.device).manual_seed(seed))

    modes = ("off", "auto") if run.gpu else ("off",)
    sample(groups[0], 4, 0, "off")  # vision features cached, kernels loaded
    for g in groups:
        with r.part(f"decode_g{g}") as out:
            out.update(shape=run.shape if run.gpu else fixture.small_shape(run.shape), prompt_tokens=prompt.length,
                       group=g, rows=[])
            for graphs in modes:
                measure.reset_peak()
                with Timer() as t_prefill:
                    sample(g, 1, 1, graphs)
                with Timer() as t:
                    ro = sample(g, new_tokens, 2, graphs)
                steps = ro.tokens.shape[1]
                per_step = (t.seconds - t_prefill.seconds) / max(steps - 1, 1)
                if per_step <= 0:
                    per_step = t.seconds / steps
                ran = "graphs" if graphs == "auto" and run.gpu and not decoder._graphs_failed else "eager"
                kv_gb = g * (prompt.length + steps / 2) * kv_per_token / 1e9
                out["rows"].append({
                    "group": g, "mode": ran, "new_tokens": steps, "seconds": round(t.seconds, 3),
                    "prefill_seconds": round(t_prefill.seconds, 3), "ms_per_step": round(1000 * per_step, 3),
                    "tokens_per_s": round(g / per_step, 1), "kv_read_gb": round(kv_gb, 3),
                    "floor_ratio": None if floor_s is None else round(per_step / floor_s, 2),
                    "peak_gib": measure.peak_gib()})
                r.save()


# --- GRPO and DPO through the engine -------------------------------------------------------------------

class Timeline:
    """How long TrainEngine took to initialise, and the training window of a loop's last optimiser step:
    from its last ``model.train()`` (both loops call it right before their forward/backward passes) or the
    step before, whichever came later, to the return of ``engine.step``. Wraps TrainEngine's methods once,
    and each ``watch``ed model's ``train``, in this process only."""

    def __init__(self):
        from veripo.train.engine import TrainEngine

        self.init_s = self.train_start = None
        self.step_ends: list[float] = []
        init, step = TrainEngine.__init__, TrainEngine.step
        timeline = self

        def timed_init(engine, *a, **kw):
            with Timer() as t:
                init(engine, *a, **kw)
            timeline.init_s = t.seconds

        def timed_step(engine):
            norm = step(engine)
            measure.sync()
            timeline.step_ends.append(time.perf_counter())
            return norm

        TrainEngine.__init__, TrainEngine.step = timed_init, timed_step

    def watch(self, model) -> None:
        self.init_s, self.train_start, self.step_ends = None, None, []
        train = model.train

        def marked_train(mode: bool = True):
            if mode:
                measure.sync()
                self.train_start = time.perf_counter()
            return train(mode)

        model.train = marked_train

    @property
    def train_seconds(self) -> float:
        return self.step_ends[-1] - max(self.train_start, *self.step_ends[-2:-1])


def alternating_reward():
    """A stand-in for the accuracy reward: 1, 0, 1, 0, ... over the rollouts as they are scored. Random
    weights never earn the rule rewards, and a group whose rewards are all equal has zero advantage and
    no gradient, so the step would not move the weights and would prove nothing."""
    from veripo import rewards

    turn = itertools.cycle([1.0, 0.0])
    rewards.accuracy_reward = lambda text, record: next(turn)


def _probes(model) -> dict:
    named = dict(model.named_parameters())
    return {k: named[k].detach().float().cpu().clone() for k in (PROBE, VISION_PROBE)}


def _moved(before: dict, engine) -> dict:
    with engine.full_parameters():
        after = _probes(engine.module)
    diff = {k: (after[k] - before[k]).abs() for k in before}
    return {"weights_moved": bool(diff[PROBE].max() > 0),
            "moved_share": round(float((diff[PROBE] > 0).float().mean()), 4),
            "max_abs_change": float(diff[PROBE].max()), "vision_unchanged": bool(diff[VISION_PROBE].max() == 0)}


def _run_context(run: Run, stage: str, zero_config: str):
    """The loops' RunContext as the 7B config sets it (checkpointing on, chunked log-probs) on DeepSpeed
    with ``zero_config``."""
    from veripo.stage_config import RunContext

    return RunContext(stage=stage, iteration=0, engine="deepspeed", zero_config=zero_config,
                      dtype="bfloat16" if run.gpu else "float32", gradient_checkpointing=True,
                      logprob_chunk=run.logprob_chunk)


def _prompt_setup(media: dict):
    from veripo.stage_config import PromptSetup

    return PromptSetup(fixture.templates(), media)


def _config_7b(section: str) -> dict:
    return fixture._config_yaml(fixture.ROOT / "configs" / "qwen25vl-7b.yaml")[section]


def _update_plan(run: Run, tok, layers: int, prompt, G: int, new: int, dpo_side: int) -> dict:
    """{"grpo": jobs_at(zero), "dpo": jobs_at(zero)}: the memory plan (veripo/train/memory_plan.py) of the
    two loops as these steps run them, at world 1, for the run's shape with ``layers`` text layers and
    this very prompt (its tokens and vision patches)."""
    from dataclasses import replace

    from veripo.train import memory_plan as mp

    job = {"media": fixture.media(run.shape), "dtype": "bfloat16" if run.gpu else "float32",
           "train": {"gradient_checkpointing": True, "logprob_chunk": run.logprob_chunk}}
    config = fixture.model_config(fixture.shape(run.shape, layers), tok).to_dict()
    s, t = mp.job_setup(config, job, 1, "sdpa", True)
    t = replace(t, prompt=prompt.length, patches=int(prompt.media["video_grid_thw"].prod(-1).sum()))
    g, d = _config_7b("grpo"), _config_7b("dpo")
    return {"grpo": lambda z: mp.grpo_jobs(s, t, z, G, new, g["micro_batch"], g["micro_batch_tokens"], 0.0),
            "dpo": lambda z: mp.dpo_jobs(s, t, z, dpo_side, d["micro_batch_tokens"])}


def _train_layers(run: Run, tok, prompt, G: int, new: int, dpo_side: int) -> int:
    """TRAIN_LAYERS, else the most text layers of the shape with which both loops fit this GPU under
    ZeRO-2 at world 1 by the memory plan (15% margin), so ZeRO-2 and ZeRO-3 run the same model; on a CPU
    the shape's own. (At world 1 nothing is sharded: the 7B's fp32 master weights and moments alone
    take 100 GB, so all 28 layers fit no single card under ZeRO-2.)"""
    from veripo.train import memory_plan as mp

    if os.environ.get("TRAIN_LAYERS"):
        return int(os.environ["TRAIN_LAYERS"])
    full = fixture.shape(run.shape).layers
    if not run.gpu:
        return full
    budget = torch.cuda.get_device_properties(0).total_memory * (1 - mp.MARGIN)
    zero2 = mp.zero_from_json(mp.ZERO_CONFIGS[2])
    for layers in range(full, 0, -1):
        plans = _update_plan(run, tok, layers, prompt, G, new, dpo_side)
        if all(job.total <= budget for at in plans.values() for job in at(zero2)):
            return layers
    return 1


def _planned(jobs: list) -> dict:
    """The plan's largest phase (and its update) less the fixed CUDA context, which
    torch.cuda.max_memory_allocated does not see: what a peak_gib is held against."""
    from veripo.train import memory_plan as mp

    def allocated(job):
        return (job.total - mp.RUNTIME_OVERHEAD) / 2**30

    peak = max(jobs, key=allocated)
    update = next(j for j in jobs if j.name.endswith(": update"))
    return {"plan_peak_gib": round(allocated(peak), 2), "plan_peak_phase": peak.name,
            "plan_update_gib": round(allocated(update), 2)}


def _train_rate(model, prompt_len: int, completions: list[int], forwards: int, seconds: float) -> dict:
    """Tokens/s and MFU of a loop's training window: the forward+backward of every sequence (its prompt
    and its own completion; padding counts nothing) and the optimiser step, in ``forwards`` forwards."""
    flops = 3 * sum(measure.forward_flops(model, 1, prompt_len, c) for c in completions)
    tokens = sum(prompt_len + c for c in completions)
    return {"train_seconds": round(seconds, 3), "train_tokens": tokens, "train_forwards": forwards,
            "train_tokens_per_s": round(tokens / seconds, 1), **measure.rate(flops, seconds)}


ZERO_STAGES = ("zero2", "zero3")


def _update_parts(run: Run, r: Result, loop) -> None:
    """``loop(model, processor, record, media, run_context, prompt, timeline) -> (engine, what it measured)``
    once per ZeRO stage (a part each, from the same random weights), with the memory plan's prediction
    beside each measured peak."""
    from veripo.train import memory_plan as mp

    G, new, side = run.env_int("GRPO_G", 8, 4), run.env_int("GRPO_TOKENS", 128, 8), run.env_int("DPO_TOKENS", 256, 8)
    tok = fixture.build_tokenizer()
    media = fixture.media(run.shape)
    processor = fixture.build_processor(tok, media)
    record = fixture.video_record(run.work, run.shape)
    layers = _train_layers(run, tok, _encode(processor, record, media), G, new, side)
    r.update(train_layers=layers)
    timeline = Timeline()
    for kind in ZERO_STAGES:
        with r.part(kind) as out:
            model = fixture.build_model(fixture.shape(run.shape, layers), tok, run.device, run.dtype)
            prompt = _encode(processor, record, media)
            if "params" not in r:
                r.update(_params(model))
                _warm_up(model, prompt)
            zero = mp.ZERO_CONFIGS[int(kind[-1])]
            planned = _planned(_update_plan(run, tok, layers, prompt, G, new, side)[r["step"]](
                mp.zero_from_json(zero)))
            timeline.watch(model)
            before = _probes(model)
            measure.reset_peak()
            with Timer() as t:
                engine, found = loop(model, processor, record, media, _run_context(run, r["step"], zero), prompt,
                                     timeline)
            out.update(zero_config=zero, zero_stage=engine.zero_stage, seconds=round(t.seconds, 2),
                       ds_init_seconds=round(timeline.init_s, 2), **found,
                       peak_gib=measure.peak_gib(), **planned, **_moved(before, engine))
            if isinstance(out["peak_gib"], float):
                out["peak_over_plan"] = round(out["peak_gib"] / out["plan_peak_gib"], 3)
            del engine, model
            if run.gpu:
                torch.cuda.empty_cache()


def _warm_up(model, prompt) -> None:
    """One small forward+backward outside the timed window, so that the first ZeRO stage measured does not
    pay the process's one-time costs (kernel selection, library handles) the second one would not."""
    from veripo.model import policy

    toks = torch.zeros(2, 16, dtype=torch.long)
    policy.completion_logprobs(model, prompt, toks, torch.ones_like(toks)).sum().backward()
    model.zero_grad(set_to_none=True)
    prompt.features.clear()  # the vision features it cached belong to this model


def grpo(run: Run, r: Result) -> None:
    """Two GRPO rounds of one video query each (G rollouts, one optimiser step, its forwards packed as the
    7B config packs them: grpo.micro_batch and micro_batch_tokens) through ``veripo.train.grpo.train_grpo``
    on DeepSpeed ZeRO-2, then ZeRO-3, world size 1, gradient checkpointing on: the second round's update
    (the first one's pays one-time costs) timed for its MFU, and the peak memory of both under each stage,
    next to the memory plan's prediction."""
    from veripo.stage_config import GRPOConfig
    from veripo.train import grpo as grpo_loop

    G, max_new = run.env_int("GRPO_G", 8, 4), run.env_int("GRPO_TOKENS", 128, 8)
    g7 = _config_7b("grpo")
    r.update(group=G, max_new_tokens=max_new, micro_batch=g7["micro_batch"],
             micro_batch_tokens=g7["micro_batch_tokens"], gradient_checkpointing=True,
             logprob_chunk=run.logprob_chunk)
    alternating_reward()
    cfg = GRPOConfig(rollouts_per_query=G, temperature=1.0, top_p=1.0, max_new_tokens=max_new, clip_eps=0.2,
                     kl_coef=0.0, adv_eps=1e-6, format_weight=0.5, freeze_vision=True, micro_batch=g7["micro_batch"],
                     micro_batch_tokens=g7["micro_batch_tokens"], grad_clip=1.0, weight_decay=0.0, seed=0,
                     checkpoint_every=100, lr=1e-4, global_batch=G, rollout_batch=1, epochs=1)

    def loop(model, processor, record, media, ctx, prompt, timeline):
        rows: list = []
        engine, metrics = grpo_loop.train_grpo(model, processor, [record, {**record, "id": "gpu-check-2"}], cfg,
                                               _prompt_setup(media), ctx, rows.extend)
        m = metrics[-1]
        rows = [row for row in rows if row["round"] == m["round"]]
        return engine, dict(
            loss=m["loss"], grad_norm=m["grad_norm"], kl=m["kl"], clip_frac=m["clip_frac"], rollouts=len(rows),
            rewards=[row["reward"] for row in rows], advantages=[round(row["advantage"], 4) for row in rows],
            tokens_per_micro_batch=m["tokens_per_micro_batch"], sample_seconds=round(m["seconds/sample"], 3),
            sample_tokens_per_s=round(sum(row["num_tokens"] for row in rows) / m["seconds/sample"], 1),
            **_train_rate(engine.module, prompt.length, [row["num_tokens"] for row in rows], m["micro_batches"],
                          timeline.train_seconds))

    _update_parts(run, r, loop)


def dpo(run: Run, r: Result) -> None:
    """Two DPO steps of two pairs of one video query each (sharing a forward as dpo.micro_batch_tokens of the
    7B config allows) through ``veripo.train.dpo.train_dpo`` on DeepSpeed ZeRO-2, then ZeRO-3, world size
    1, gradient checkpointing on: the second step timed for its MFU, the peak memory against the plan.
    Policy == reference at the first step, so its loss is ln 2 (up to the reference forward's own float
    noise)."""
    from veripo.stage_config import DPOConfig
    from veripo.train import dpo as dpo_loop

    length = run.env_int("DPO_TOKENS", 256, 8)
    sides = [length, length - length // 4]
    budget = _config_7b("dpo")["micro_batch_tokens"]
    r.update(pairs_per_step=2, tokens_per_side=sides, micro_batch_tokens=budget, gradient_checkpointing=True,
             logprob_chunk=run.logprob_chunk)
    cfg = DPOConfig(beta=0.1, lr=1e-4, global_batch=2, epochs=1, nll_coef=0.0, grad_clip=1.0, freeze_vision=True,
                    weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0, min_pairs=1,
                    on_too_few_pairs="stop", micro_batch_tokens=budget)

    def loop(model, processor, record, media, ctx, prompt, timeline):
        vocab = len(processor.tokenizer) - 32
        g = torch.Generator().manual_seed(1)
        pairs = []
        for i in range(4):
            chosen, rejected = (torch.randint(0, vocab, (n,), generator=g).tolist() for n in sides)
            pairs.append({"pair_id": f"gpu-check#{i}", "query_id": record["id"], "chosen": "", "rejected": "",
                          "chosen_ids": chosen, "rejected_ids": rejected, "query": record})
        engine, metrics, _ = dpo_loop.train_dpo(model, processor, pairs, cfg, _prompt_setup(media), ctx)
        first, m = metrics[0], metrics[-1]
        return engine, dict(
            loss=first["loss"], loss_minus_ln2=first["loss"] - math.log(2), margin=first["margin"],
            grad_norm=first["grad_norm"], steps=len(metrics), tokens_per_micro_batch=m["tokens_per_micro_batch"],
            **_train_rate(engine.module, prompt.length, sides * m["pairs"], m["forwards_per_rank"],
                          timeline.train_seconds))

    _update_parts(run, r, loop)


ENGINES = ("torch", "zero2", "zero3")


def engines(run: Run, r: Result) -> None:
    """One optimiser step of three micro-batches (uneven: 2, 2 and 1 sequences of a video query, the last
    one's weight half the others') through ``TrainEngine`` as the loops drive it (``forward`` / ``backward``
    per micro-batch, one ``step``), from the same weights, on plain torch AdamW, ZeRO-2 and ZeRO-3 at
    the small shape, gradient checkpointing on: each engine's gradient norm, its ratio to torch's, and
    the largest weight difference to torch's after the step. A ZeRO-3 that kept only its last
    micro-batch's gradient (issue 18) gives a ratio far from 1."""
    from veripo.model import policy
    from veripo.train.checkpoints import frozen_vision
    from veripo.train.engine import TrainEngine

    T = run.env_int("ENGINES_TOKENS", 64, 8)
    sizes, weights = (2, 2, 1), (1.0, 1.0, 0.5)
    g = torch.Generator().manual_seed(2)
    r.update(shape_trained=fixture.small_shape(run.shape), micro_batches=list(sizes), micro_batch_weights=list(weights),
             completion_tokens=T, gradient_checkpointing=True, logprob_chunk=run.logprob_chunk)
    completions = None
    norms, probes = {}, {}
    for kind in ENGINES:
        with r.part(kind) as out:
            model, processor, record, media = _policy_inputs(run, fixture.small_shape(run.shape), run.dtype)
            frozen_vision(model)
            prompt = _encode(processor, record, media)
            if completions is None:
                completions = torch.randint(0, len(processor.tokenizer) - 32, (sum(sizes), T), generator=g)
            zero = None if kind == "torch" else f"configs/deepspeed/{kind}.json"
            engine = TrainEngine(model, 1e-4, 0.0, 1.0, "torch" if kind == "torch" else "deepspeed", zero,
                                 "bfloat16" if run.gpu else "float32", gradient_checkpointing=True)
            engine.module.train()
            start = 0
            with Timer() as t:
                for n, w in zip(sizes, weights):
                    toks = completions[start:start + n]
                    mask = torch.ones_like(toks)
                    lp = policy.completion_logprobs(engine.module, prompt, toks, mask, chunk=run.logprob_chunk,
                                                    forward=engine.forward)
                    engine.backward(-lp.float().mean(1).sum() * w)
                    start += n
                norms[kind] = engine.step()
            with engine.full_parameters():
                probes[kind] = dict(engine.module.named_parameters())[PROBE].detach().float().cpu().clone()
            out.update(grad_norm=norms[kind], zero_stage=engine.zero_stage, seconds=round(t.seconds, 3))
            del engine, model
            if run.gpu:
                torch.cuda.empty_cache()
    if "torch" in norms:
        r["grad_norm_ratio"] = {k: norms[k] / norms["torch"] for k in norms if k != "torch"}
        r["max_weight_diff"] = {k: float((probes[k] - probes["torch"]).abs().max()) for k in probes if k != "torch"}


STEPS = {"preflight": preflight, "fwd_bwd": fwd_bwd, "sampler": sampler, "grpo": grpo, "dpo": dpo, "engines": engines}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=list(STEPS))
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    a = ap.parse_args()
    shape = os.environ.get("SHAPE", "3b")
    device = torch.device(os.environ.get("DEVICE", "cuda"))
    if shape not in (*fixture.SHAPES, "tiny"):
        raise SystemExit(f"SHAPE={shape!r}: expected one of 3b, 7b, small, tiny")
    run = Run(shape, device, a.work)
    a.results.mkdir(parents=True, exist_ok=True)
    r = Result(a.results / f"{a.step}.json", step=a.step, shape=shape, device=str(device),
               dtype=str(run.dtype).removeprefix("torch."))
    try:
        STEPS[a.step](run, r)
    except Exception as exc:  # noqa: BLE001 - the step's failure is its finding: recorded, exit 1
        traceback.print_exc()
        r["error"] = measure.error_text(exc)
    r["status"] = "failed" if ("error" in r or r.failed_parts) else "ok"
    r.save()
    return 0 if r["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
