"""Hours per stage and per iteration of a config on N GPUs, from the GPU check's measured rates.

    .venv/bin/python speed/cluster_estimate.py SUMMARY.json [--config configs/qwen25vl-7b.yaml] [--gpus 16] \\
        [--video-queries N] [--activation-queries N] [--length-share 0.5] [--rate NAME=VALUE ...]

SUMMARY.json is what speed/gpu/run.sh writes (speed/gpu/summary.py); the config is merged over config.yaml
key by key, as Snakemake merges --configfile files. Rates taken from the summary:

  decode       ms per step of a group of G (sampler step; every group size measured), for sampling,
               the judge's and the evaluation's answers
  forward      TFLOP/s of forward+backward (fwd_bwd, checkpointing off), for every no-grad forward:
               GRPO's old-policy scoring, DPO's reference, the judge's and evaluation's prefill
  grpo_update  TFLOP/s of the GRPO training window (grpo step; the entry at the config's ZeRO stage)
  dpo_update   TFLOP/s of the DPO training window (dpo step)
  ds_init      seconds of DeepSpeed's start, once per training job

``--rate`` replaces one (``decode@8=82`` ms per step at G=8; ``forward=451`` TFLOP/s; ``ds_init=20`` s);
such rates are marked as given on the command line. Work is counted in model FLOPs as the GPU check
counts them (speed/gpu/measure.py) for the config's model, so a TFLOP/s measured at another shape or
layer count carries over; decode rates do not (they are the measured model's). Every assumption is
printed with the table. Pure arithmetic on the JSON and YAML: no torch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from veripo.config import grpo_stage  # noqa: E402
from veripo.train import memory_plan as mp  # noqa: E402  (model shapes, token counts, the config merge)

# Questions per benchmark when the config's question file is not readable here: the authors' files
# (../shared/docs/BENCHMARKS.md); Video-MMMU's was never published, its benchmark has 300 videos x 3 tracks.
KNOWN_QUESTIONS = {"vsi_bench": 5130, "video_mme": 2700, "lvbench": 1549, "tomato": 1484, "mmvu": 625,
                   "video_mmmu": 900}
# Training queries per stage when the config's data file is not readable here.
DEFAULT_QUERIES = 1024
# The judge's prompt besides the rollout's think and answer: its template and the question.
JUDGE_PROMPT_TOKENS = 200
RATE_NAMES = ("forward", "grpo_update", "dpo_update", "ds_init")
GIVEN = "given on the command line"


@dataclass(frozen=True)
class Rate:
    """A measured (or given) rate: ``value`` in ``unit``, or None with ``source`` saying why it is missing."""

    value: float | None
    unit: str
    source: str


@dataclass
class Rates:
    decode: dict[int, Rate]  # group size -> ms per step
    named: dict[str, Rate]  # RATE_NAMES -> TFLOP/s or seconds

    def ms_per_step(self, group: int) -> tuple[float | None, str]:
        """(ms per decode step of a group of ``group``, where it came from): the measured group, else the
        nearest measured one (decoding is memory-bound: a step costs about the same for any group)."""
        known = {g: r for g, r in self.decode.items() if r.value is not None}
        if not known:
            reasons = "; ".join(r.source for r in self.decode.values()) or "no decode rate in the summary"
            return None, f"missing: {reasons}"
        g = min(known, key=lambda k: (abs(k - group), k))
        r = known[g]
        return r.value, f"{r.value:g} ms/step at G={g}" + ("" if g == group else f" for G={group}") + f" ({r.source})"


# Reading the summary ----------------------------------------------------------------------------------

def _walk(value, path: str = ""):
    """(path, dict) of every mapping in a JSON value, outermost first."""
    if isinstance(value, dict):
        yield path, value
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _step(summary: dict, name: str) -> tuple[dict | None, str]:
    """A step's result, or None and why there is none."""
    run = (summary.get("steps") or {}).get(name)
    if not run:
        return None, f"step {name} not in the summary"
    result = run.get("result") or {}
    if not result:
        return None, f"step {name}: {run.get('status', 'no result')}"
    if "error" in result:
        return None, f"step {name} failed: {result['error']}"
    return result, ""


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _tflops(part: dict, tokens_key: str, layer_weights, where: str) -> Rate:
    """A window's achieved TFLOP/s: as measured; on a CPU, whose figure the summary rounds to 0, from its
    tokens/s at 6 x the decoder layers' weights per token (the LM head and attention left out)."""
    if _positive(part.get("tflops")):
        return Rate(float(part["tflops"]), "TFLOP/s", where)
    if _positive(part.get(tokens_key)) and _positive(layer_weights):
        return Rate(part[tokens_key] * 6 * layer_weights / 1e12, "TFLOP/s",
                    f"{where}, from {part[tokens_key]:g} tok/s x 6 x {layer_weights:,} layer weights")
    return Rate(None, "TFLOP/s", f"{where} has no TFLOP/s or tokens/s")


def rates_from_summary(summary: dict, zero_stage: int) -> Rates:
    """Every rate the estimate uses, read from a GPU-check summary; a missing one says why."""
    decode: dict[int, Rate] = {}
    sampler, why = _step(summary, "sampler")
    for path, part in _walk(sampler or {}):
        if "group" in part and ("ms_per_step" in part or "tokens_per_s" in part) and "error" not in part:
            ms = part.get("ms_per_step")
            if not _positive(ms) and _positive(part.get("tokens_per_s")):
                ms = 1000 * part["group"] / part["tokens_per_s"]
            g = int(part["group"])
            # several modes of one group (eager, CUDA graphs): the fastest, the sampler's default on a GPU
            if _positive(ms) and (g not in decode or ms < decode[g].value):
                mode = f" ({part['mode']})" if "mode" in part else ""
                decode[g] = Rate(float(ms), "ms/step", f"sampler.{path}{mode}")
    if not decode:
        decode[0] = Rate(None, "ms/step", why or "no decode rate in step sampler")

    named: dict[str, Rate] = {}
    fb, why = _step(summary, "fwd_bwd")
    part = (fb or {}).get("gc_off") or (fb or {}).get("gc_on")
    named["forward"] = (_tflops(part, "tokens_per_s", fb.get("layer_weights"), "fwd_bwd.gc_off")
                        if part and "error" not in part else Rate(None, "TFLOP/s", why or "fwd_bwd has no result"))
    inits = []
    for step, name in (("grpo", "grpo_update"), ("dpo", "dpo_update")):
        result, why = _step(summary, step)
        windows = [(p, d) for p, d in _walk(result or {}) if "train_tokens_per_s" in d and "error" not in d]
        if not windows:
            named[name] = Rate(None, "TFLOP/s", why or f"step {step} has no training window")
            continue
        path, d = next(((p, d) for p, d in windows if d.get("zero_stage") == zero_stage), windows[0])
        stage = f", ZeRO-{d['zero_stage']}" if "zero_stage" in d else ""
        if d.get("zero_stage") != zero_stage:
            stage += f"; ZeRO-{zero_stage} not measured"
        named[name] = _tflops(d, "train_tokens_per_s", result.get("layer_weights"), f"{step}.{path}{stage}")
        inits += [d["ds_init_seconds"] for _, d in windows if _positive(d.get("ds_init_seconds"))]
    named["ds_init"] = (Rate(max(inits), "s", "the grpo/dpo steps' DeepSpeed init (the longer)") if inits
                        else Rate(None, "s", "no ds_init_seconds in the grpo/dpo steps"))
    return Rates(decode, named)


def override(rates: Rates, given: list[str]) -> Rates:
    """``NAME=VALUE`` pairs (``decode@G`` in ms per step, the others in their units) over ``rates``. Given
    decode rates replace all of the summary's (one set of measurements, not a mix)."""
    for item in given:
        name, _, value = item.partition("=")
        number = float(value)
        if name.startswith("decode@"):
            rates.decode = {g: r for g, r in rates.decode.items() if r.source == GIVEN}
            rates.decode[int(name.split("@")[1])] = Rate(number, "ms/step", GIVEN)
        elif name in RATE_NAMES:
            rates.named[name] = Rate(number, rates.named[name].unit, GIVEN)
        else:
            raise SystemExit(f"--rate {item!r}: expected decode@G or one of {', '.join(RATE_NAMES)}")
    return rates


# The work of a config --------------------------------------------------------------------------------

def layer_weights(s: mp.ModelShape) -> int:
    """Matmul weights of one decoder layer: q, k, v, o and the SwiGLU MLP (speed/gpu/measure.py's count)."""
    return 2 * s.hidden * s.hidden + 2 * s.hidden * s.kv_width + 3 * s.hidden * s.intermediate


def forward_flops(s: mp.ModelShape, n: float, prompt: int, completion: int) -> float:
    """Model FLOPs of a forward over n sequences of prompt + completion tokens, as the GPU check counts
    them: every token through the layers' matmuls, the LM head on the completion, causal attention."""
    seq = prompt + completion
    return (2 * s.layers * layer_weights(s) * n * seq + 2 * s.vocab * s.hidden * n * completion
            + 2 * s.layers * s.hidden * n * seq * seq)


@dataclass(frozen=True)
class Row:
    stage: str
    work: str
    rate: str  # the rates it used, or "missing: ..."
    gpu_seconds: float | None  # None: a rate it needs is missing
    wall_seconds: float | None


@dataclass
class Setup:
    """What the estimate assumes besides the config (each is printed)."""

    gpus: int
    video_queries: int
    activation_queries: int
    length_share: float = 0.5
    notes: list[str] = field(default_factory=list)


def _seconds(flops: float, rate: Rate) -> tuple[float | None, str]:
    if rate.value is None:
        return None, f"missing: {rate.source}"
    return flops / (rate.value * 1e12), f"{rate.value:.4g} TFLOP/s ({rate.source})"


def _decode_seconds(rates: Rates, groups: float, group: int, steps: int) -> tuple[float | None, str]:
    ms, where = rates.ms_per_step(group)
    return (None if ms is None else groups * steps * ms / 1000), where


def _row(stage: str, work: str, parts: list[tuple[float | None, str]], parallel: int) -> Row:
    """A stage of ``parts`` (GPU-seconds, rate note) spread over ``parallel`` GPUs."""
    seconds = [s for s, _ in parts]
    gpu = None if any(s is None for s in seconds) else sum(seconds)
    return Row(stage, work, "; ".join(n for _, n in parts), gpu, None if gpu is None else gpu / parallel)


def grpo_rows(config: dict, rates: Rates, setup: Setup, s: mp.ModelShape, stage: str, iteration: int) -> list[Row]:
    """Sampling, scoring and update of one GRPO stage on ``setup.gpus`` GPUs."""
    grpo, train = config["grpo"], config["train"]
    sched = grpo_stage(config, iteration)
    G, epochs = grpo["rollouts_per_query"], sched["epochs"]
    queries = setup.activation_queries if iteration == 0 else setup.video_queries
    new = round(grpo["max_new_tokens"] * setup.length_share)
    if iteration == 0:  # text and image queries: the text and one image at max_pixels
        prompt = mp.TEXT_TOKENS + config["media"]["max_pixels"] // (28 * 28)
    else:
        prompt = mp.TEXT_TOKENS + mp.video_tokens(config["media"], s)[0]
    rollouts = queries * G * epochs
    label = f"GRPO {stage}"
    patches = 0 if iteration == 0 else mp.video_tokens(config["media"], s)[1]
    # one prefill per query (the vision tower once), then the group's decode steps
    prefill = _seconds(queries * epochs * (forward_flops(s, 1, prompt, 0) + 2 * mp.vision_params(s) * patches),
                       rates.named["forward"])
    sampling = _decode_seconds(rates, queries * epochs, G, new)
    rows = [_row(f"{label}: sampling", f"{queries * epochs:,} prefills of {prompt} tokens, groups of G={G} x {new} "
                 "tokens", [prefill, sampling], min(setup.gpus, sched["rollout_batch"]))]
    steps_per_round = math.ceil(sched["rollout_batch"] * G / sched["global_batch"])
    passes = int(steps_per_round > 1 or grpo.get("rollout_backend", "hf") != "hf") + int(grpo.get("kl_coef", 0) > 0)
    fwd = forward_flops(s, rollouts, prompt, new)
    rows.append(_row(f"{label}: scoring", f"{passes} no-grad pass(es) over {rollouts:,} x ({prompt} + {new}) tokens",
                     [_seconds(passes * fwd, rates.named["forward"])], setup.gpus))
    rows.append(_row(f"{label}: update", f"forward+backward of {rollouts:,} x ({prompt} + {new}) tokens",
                     [_seconds(3 * fwd, rates.named["grpo_update"])], setup.gpus))
    if train.get("engine") == "deepspeed":
        init = rates.named["ds_init"]
        rows.append(Row(f"{label}: job start", "DeepSpeed init, on every GPU at once",
                        "missing: " + init.source if init.value is None else f"{init.value:g} s ({init.source})",
                        None if init.value is None else init.value * setup.gpus, init.value))
    return rows


def judge_row(config: dict, rates: Rates, setup: Setup, s: mp.ModelShape) -> Row:
    """verifier_judge: every rollout of the iteration's GRPO stage asked, on one GPU."""
    judge, grpo = config["verifier"]["judge"], config["grpo"]
    rollouts = setup.video_queries * grpo["rollouts_per_query"] * grpo_stage(config, 1)["epochs"]
    if judge["backend"] in ("rule", "http"):
        what = "the rule judge: no model" if judge["backend"] == "rule" else "an external server: not counted"
        return Row("judge", f"{rollouts:,} rollouts, {what}", "-", 0.0, 0.0)
    batch, reply = judge.get("batch_size", 1), judge.get("max_new_tokens", 16)
    prompt = round(grpo["max_new_tokens"] * setup.length_share) + JUDGE_PROMPT_TOKENS
    parts = [_seconds(forward_flops(s, rollouts, prompt, 0), rates.named["forward"]),
             _decode_seconds(rates, math.ceil(rollouts / batch), batch, reply)]
    return _row("judge", f"{rollouts:,} rollouts: {prompt}-token prompts, {reply}-token replies in batches of {batch}",
                parts, 1)


def dpo_row(config: dict, rates: Rates, setup: Setup, s: mp.ModelShape) -> Row:
    """dpo_train: the reference pass and the update over pairs.max_per_query pairs of every video query."""
    pairs = config["pairs"]["max_per_query"] * setup.video_queries
    epochs = config["dpo"].get("epochs", 1)
    prompt = mp.TEXT_TOKENS + mp.video_tokens(config["media"], s)[0]
    side = round(config["grpo"]["max_new_tokens"] * setup.length_share)
    fwd = forward_flops(s, 2 * pairs, prompt, side)
    return _row("DPO", f"{pairs:,} pairs x 2 sides x ({prompt} + {side}) tokens, {epochs} epoch(s)",
                [_seconds(fwd, rates.named["forward"]), _seconds(3 * epochs * fwd, rates.named["dpo_update"])],
                setup.gpus)


def benchmark_questions(config: dict, name: str, spec: dict) -> tuple[int, str]:
    """Questions of a benchmark: its question file when readable here, else KNOWN_QUESTIONS."""
    path = Path(spec.get("questions", ""))
    try:
        return len(json.loads(path.read_text())), str(path)
    except (OSError, ValueError, TypeError):
        if name in KNOWN_QUESTIONS:
            return KNOWN_QUESTIONS[name], "known count"
        return 0, "unknown: not counted"


def eval_row(config: dict, rates: Rates, setup: Setup, s: mp.ModelShape) -> Row:
    """eval_generate of one checkpoint on every configured benchmark, one GPU per benchmark job."""
    ev = config["eval"]
    batch, answer = ev.get("batch_size", 1), round(ev["max_new_tokens"] * setup.length_share)
    vision = 2 * mp.vision_params(s)
    times, counts, notes = [], [], []
    for name, spec in ev["benchmarks"].items():
        media = {**ev["media"], **{k: spec[k] for k in ("fps", "max_frames", "min_pixels", "max_pixels") if k in spec}}
        tokens, patches = mp.video_tokens(media, s)
        prompt = mp.TEXT_TOKENS + tokens
        q, source = benchmark_questions(config, name, spec)
        counts.append(f"{name} {q:,}" + ("" if source != "unknown: not counted" else " (unknown)"))
        prefill = _seconds(q * (forward_flops(s, 1, prompt, 0) + vision * patches), rates.named["forward"])
        decode = _decode_seconds(rates, math.ceil(q / batch), batch, answer)
        notes = notes or [prefill[1], decode[1]]
        times.append(None if prefill[0] is None or decode[0] is None else prefill[0] + decode[0])
    work = f"{', '.join(counts)} questions; answers of {answer} tokens in batches of {batch}"
    if any(t is None for t in times):
        return Row("evaluation", work, "; ".join(notes), None, None)
    return Row("evaluation", work, "; ".join(notes), sum(times), max(max(times), sum(times) / setup.gpus))


def estimate(config: dict, rates: Rates, setup: Setup) -> dict[str, list[Row]]:
    """Rows of iteration 0 (reasoning activation, then its evaluation) and of each iteration k >= 1
    (video GRPO, judge, DPO, evaluation)."""
    s = mp.model_shape(config)
    return {
        "iteration 0": grpo_rows(config, rates, setup, s, "activation", 0) + [eval_row(config, rates, setup, s)],
        "iteration k >= 1": grpo_rows(config, rates, setup, s, "video", 1)
        + [judge_row(config, rates, setup, s), dpo_row(config, rates, setup, s), eval_row(config, rates, setup, s)],
    }


def total(rows: list[Row]) -> tuple[float, float, int]:
    """(GPU-seconds, wall seconds, rows missing) of rows run one after the other; the known rows summed."""
    return (sum(r.gpu_seconds or 0.0 for r in rows), sum(r.wall_seconds or 0.0 for r in rows),
            sum(r.wall_seconds is None for r in rows))


def assumptions(config: dict, setup: Setup, summary: dict, from_summary: bool = True) -> list[str]:
    """Everything the estimate assumes (``from_summary``: some rate is the summary's, not given)."""
    s = mp.model_shape(config)
    measured = summary.get("shape")
    lines = [
        f"rollouts, DPO sides, judged texts and evaluation answers are {setup.length_share:g} x their max_new_tokens "
        "long; each query's group of G decodes on its own (as GRPO samples today) for that many steps (its longest "
        "row decides: optimistic)",
        f"training queries per stage: video {setup.video_queries:,}, activation {setup.activation_queries:,}; "
        "every iteration keeps every video query (the curriculum's discards not counted)",
        f"prompts: {mp.TEXT_TOKENS} text tokens + the video at the media budget (long enough for max_frames, frames at "
        "max_pixels); activation queries: the text and one image at max_pixels",
        "GRPO, scoring and DPO spread over all GPUs with perfect data-parallel scaling (sampling over at most "
        "rollout_batch GPUs); the judge runs on one GPU; each benchmark's evaluation on one GPU, side by side",
        "a no-grad forward runs at forward+backward's TFLOP/s; TFLOP/s carry over to the config's model and "
        "lengths; decode ms/step are the measured model's and group's (another group: the nearest one measured)",
        f"DPO: pairs.max_per_query ({config['pairs']['max_per_query']}) pairs per video query (the most the "
        "builder makes), each side a rollout's length (reflection pairs' longer chosen side not counted)",
        "evaluation: every benchmark of eval.benchmarks once per iteration (base model, eval_grpo and the score "
        "jobs' judge not counted); prefill counts the vision tower at 2 x its weights per patch",
        "sampling, the judge and evaluation at our HF sampler's measured rates"
        + (f" (grpo.rollout_backend {config['grpo'].get('rollout_backend', 'hf')}, eval.backend "
           f"{config['eval'].get('backend', 'hf')}: vLLM where those resolve to it, not measured here)"
           if "auto" in (config["grpo"].get("rollout_backend"), config["eval"].get("backend")) else ""),
        "stages of an iteration run one after the other; model loading and checkpoint saving not counted",
    ]
    shape = next((k for k, v in mp.KNOWN_SHAPES.items() if v == s), config["base_model"])
    if measured != shape and from_summary:
        lines.append(f"THE SUMMARY MEASURED SHAPE {measured!r}, the config runs {shape!r}: its decode rates are "
                     f"not this model's, and its TFLOP/s need not carry over")
    return lines + setup.notes


def _hours(seconds: float | None) -> str:
    return "missing" if seconds is None else f"{seconds / 3600:.2f}"


def report(config: dict, rates: Rates, setup: Setup, summary: dict, summary_path: str) -> str:
    """The estimate as printed: where the rates come from, the assumptions, the table and the totals."""
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(summary_path))) if summary_path else "?"
    lines = [f"cluster estimate: {config['base_model']} on {setup.gpus} GPUs, {config['iterations']} iterations",
             f"GPU-check summary {summary_path} (shape {summary.get('shape')}, "
             f"{summary.get('gpu') or summary.get('device')}, {summary.get('dtype')}; file written {when} UTC); rates:"]
    named = [(f"decode G={g}", r) for g, r in sorted(rates.decode.items())] + list(rates.named.items())
    lines += [f"  {name}: " + (f"{r.value:.4g} {r.unit} ({r.source})" if r.value is not None
                               else f"missing: {r.source}") for name, r in named]
    lines.append("assumptions:")
    from_summary = any(r.value is not None and r.source != GIVEN for _, r in named)
    lines += [f"  - {a}" for a in assumptions(config, setup, summary, from_summary)]
    rows = estimate(config, rates, setup)
    lines += ["", f"| stage | work | GPU-hours | hours on {setup.gpus} GPUs | rates used |", "|---|---|---|---|---|"]
    sums = {}
    for part, part_rows in rows.items():
        for r in part_rows:
            lines.append(f"| {r.stage} | {r.work} | {_hours(r.gpu_seconds)} | {_hours(r.wall_seconds)} | {r.rate} |")
        gpu, wall, missing = sums[part] = total(part_rows)
        flag = f" (without {missing} missing row(s))" if missing else ""
        lines.append(f"| **{part}** | sum of the rows above{flag} | {gpu / 3600:.2f} | {wall / 3600:.2f} | |")
    k = config["iterations"]
    gpu = sums["iteration 0"][0] + k * sums["iteration k >= 1"][0]
    wall = sums["iteration 0"][1] + k * sums["iteration k >= 1"][1]
    missing = sums["iteration 0"][2] + sums["iteration k >= 1"][2]
    lines.append(f"| **run** | iteration 0 + {k} x iteration k" + (" (rows missing)" if missing else "")
                 + f" | {gpu / 3600:.2f} | {wall / 3600:.2f} | |")
    return "\n".join(lines)


def zero_stage(config: dict, setup: Setup) -> int:
    """The ZeRO stage whose training window the estimate takes: the config's; for ``zero_config: auto``
    ZeRO-2, the stage the memory plan picks wherever it fits (speed/memory_plan.py says per job)."""
    train = config["train"]
    if train["engine"] != "deepspeed":
        return 0
    if train["zero_config"] == mp.AUTO:
        setup.notes.append("train.zero_config auto: the update rates of ZeRO-2 (the memory plan's pick where it "
                           "fits; speed/memory_plan.py names each job's), another stage's where ZeRO-2 was not "
                           "measured")
        return 2
    return mp.zero_setup(config).stage


def _count_lines(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def setup_for(config: dict, gpus: int, video_queries: int | None, activation_queries: int | None,
              length_share: float) -> Setup:
    """The estimate's setup: queries per stage as given, else counted in the config's data files, else
    DEFAULT_QUERIES (a note says so)."""
    setup = Setup(gpus, 0, 0, length_share)
    for key, given, name in (("train_video", video_queries, "video"), ("train_activation", activation_queries,
                                                                       "activation")):
        counted = given or _count_lines(config["data"][key])
        if counted is None:
            setup.notes.append(f"{name} queries: data.{key} ({config['data'][key]}) not readable here: "
                               f"{DEFAULT_QUERIES} assumed (--{name}-queries sets it)")
        setattr(setup, f"{name}_queries", counted or DEFAULT_QUERIES)
    return setup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("summary", help="the GPU check's summary.json")
    ap.add_argument("--config", default=str(ROOT / "configs" / "qwen25vl-7b.yaml"),
                    help="merged over config.yaml (default: the 7B config)")
    ap.add_argument("--gpus", type=int, default=16)
    ap.add_argument("--video-queries", type=int, help="video queries per iteration (default: data.train_video's "
                                                      f"lines when readable, else {DEFAULT_QUERIES})")
    ap.add_argument("--activation-queries", type=int, help="activation queries (default: data.train_activation's "
                                                           f"lines when readable, else {DEFAULT_QUERIES})")
    ap.add_argument("--length-share", type=float, default=0.5, help="generated length / max_new_tokens")
    ap.add_argument("--rate", action="append", default=[], metavar="NAME=VALUE",
                    help="replace a rate: decode@G (ms/step; given ones replace all measured decode rates), "
                         "forward, grpo_update, dpo_update (TFLOP/s), ds_init (s)")
    args = ap.parse_args(argv)
    config = mp.load_config([str(ROOT / "config.yaml"), args.config])
    summary = json.loads(Path(args.summary).read_text())
    setup = setup_for(config, args.gpus, args.video_queries, args.activation_queries, args.length_share)
    rates = override(rates_from_summary(summary, zero_stage(config, setup)), args.rate)
    print(report(config, rates, setup, summary, args.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
