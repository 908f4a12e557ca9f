"""``veripo export RUN_DIR ITER OUT``: one checkpoint of a finished run as a self-contained folder.

OUT holds the checkpoint's files (``from_pretrained(OUT)`` loads it), ``settings.json`` (the inference
settings ``veripo infer --model OUT`` reads, and every training job's settings along the chain that made
the checkpoint) and a model card, ``README.md``. The card states only what the run's files hold: the base
model, the training data files and their sizes, each stage with its steps and main hyper-parameters, the
checkpoint's scores (with their 95% intervals when the score file has them) and the inference settings.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click

from veripo.cli import main_guard, terminal_safe
from veripo.commands.checkpoint import EXPORTED_SETTINGS, checkpoint_job, eval_records, stage_chain
from veripo.errors import InputError

# The hyper-parameters the card's stage table shows (settings.json holds them all).
CARD_KEYS = {"warmup": ("steps", "lr", "batch_size"),
             "grpo": ("lr", "global_batch", "rollouts_per_query", "temperature", "max_new_tokens", "kl_coef",
                      "epochs"),
             "dpo": ("beta", "lr", "global_batch", "epochs")}


def checkpoint_of(iteration: str, grpo: bool) -> str:
    """The run's path of the model of ``iteration`` (README "What runs"); ``grpo``: iteration K's GRPO one."""
    if iteration == "base":
        return "base/model"
    if not iteration.isdigit():
        raise click.BadParameter(f"expected an iteration number or 'base', got {iteration!r}", param_hint="ITER")
    k = int(iteration)
    return f"iter{k}/grpo/model" if k == 0 or grpo else f"iter{k}/dpo/model"


def line_count(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def score_rows(run_dir: Path, rel: str) -> list[dict]:
    """The score files of checkpoint ``rel`` (beside its evaluation records), with their paths."""
    from veripo.jsonio import read_json

    rows = []
    for record in eval_records(run_dir, rel):
        path = record.with_name(record.name.removesuffix(".run.json") + ".json")
        if path.is_file():
            rows.append({"file": path.relative_to(run_dir).as_posix(), **read_json(path)})
    return rows


def with_ci(value: float, ci) -> str:
    return f"{value:.2f}" + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def stage_name(rel: str) -> str:
    return rel.removesuffix("/model")


def stage_section(config: dict) -> tuple[str, dict]:
    for name in CARD_KEYS:
        if isinstance(config.get(name), dict):
            return name, config[name]
    return "", {}


def base_description(run_dir: Path, chain: list) -> str:
    """The base model: the first job's input, described by base/model.json when the run built it."""
    from veripo.jsonio import read_json

    first = str(chain[-1][2].get("inputs", {}).get("model", "?")) if chain else "?"
    info = run_dir / "base" / "model.json"
    if first.startswith("base/") and info.is_file():
        spec = read_json(info)
        if spec.get("kind") == "tiny":
            return (f"a tiny Qwen2.5-VL built from the run's config (`base/model.json`: {spec.get('params'):,} "
                    f"parameters, randomly initialised), then warmed up (stage `base` below)")
    return f"`{first}`"


def model_card(run_dir: Path, rel: str, chain: list, scores: list[dict], job: dict, source: str) -> str:
    """The README.md of the exported folder; see the module's docstring for what it may state."""
    base = base_description(run_dir, chain)
    front = ["---", "library_name: transformers", "tags: [veripo, qwen2.5-vl, video-question-answering]"]
    first = str(chain[-1][2].get("inputs", {}).get("model", "")) if chain else ""
    if first and not first.startswith(("base/", "/", ".")):
        front.append(f"base_model: {first}")
    lines = front + ["---", "", f"# VerIPO checkpoint `{rel}`", "",
                     f"Exported from the run directory `{run_dir.name}` by `veripo export`: the checkpoint "
                     f"`{rel}`, trained by the VerIPO loop (GRPO, rollout-aware verifier, DPO) of this "
                     "repository.", "", "## Base model", "", base, "",
                     "## Training, oldest stage first", "",
                     "| stage | from | data | steps | hyper-parameters |", "|---|---|---|---|---|"]
    for ckpt, path, record in reversed(chain):
        stage = stage_name(ckpt)
        section, values = stage_section(record["config"])
        inputs = record.get("inputs", {})
        data = inputs.get("data") or inputs.get("pairs") or ""
        size = line_count(run_dir / data) if data else None
        data_text = f"`{data}`" + (f" ({size} {'pairs' if 'pairs' in inputs else 'queries'})" if size else "")
        metrics = path.parent / ("warmup_metrics.jsonl" if section == "warmup" else "metrics.jsonl")
        steps = line_count(metrics)
        hyper = ", ".join(f"{k} {values[k]}" for k in CARD_KEYS.get(section, ()) if k in values)
        lines.append(f"| `{stage}` ({section}) | `{inputs.get('model', '?')}` | {data_text} | "
                     f"{steps if steps is not None else '?'} | {hyper} |")
    lines += ["", "Every job's settings, in full: `settings.json`, `run` (by stage).", "", "## Scores", ""]
    if scores:
        lines += ["| benchmark | questions (file) | n | overall | official overall | inconsistency |",
                  "|---|---|---|---|---|---|"]
        for s in scores:
            official = with_ci(s["official_overall"], s.get("official_ci95")) if "official_overall" in s else ""
            rate = s.get("inconsistency", {}).get("rate")
            questions = s.get("provenance", {}).get("questions", "")
            lines.append(f"| {s['benchmark']} | `{questions}` | {s['n']} | {with_ci(s['overall'], s.get('ci95'))} | "
                         f"{official} | {'' if rate is None else f'{rate:.1f}%'} |")
        lines += ["", "Scores x100 by VerIPO's rules on the question file named (`veripo score`); 95% CI: "
                  "bootstrap interval over questions, where the score file has one. From "
                  + ", ".join(f"`{s['file']}`" for s in scores) + "."]
    else:
        lines.append("The run scored no benchmark with this checkpoint.")
    gen, media = job["generation"], job["media"]
    lines += ["", "## Inference settings", "",
              f"From {source}, kept in `settings.json` (`inference`), which `veripo infer --model <this folder>` "
              "reads:", "",
              f"- dtype {job['dtype']}, attention {job['attn_implementation'] or 'the default'}",
              f"- decoding: temperature {gen['temperature']}, top_p {gen['top_p']}, repetition penalty "
              f"{gen['repetition_penalty']}, at most {gen['max_new_tokens']} new tokens",
              f"- video: {media['fps']} frames per second, {media['min_frames']}-{media['max_frames']} frames, "
              f"{media['min_pixels']}-{media['max_pixels']} pixels per frame",
              "- prompts: `settings.json` `inference.prompts` (the answer in `<think>...</think><answer>...</answer>`)",
              "", "## Use", "", "```python",
              "from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration",
              "", 'model = Qwen2_5_VLForConditionalGeneration.from_pretrained("<this folder>")',
              'processor = AutoProcessor.from_pretrained("<this folder>")', "```", "",
              "or, with this repository installed: `veripo infer --model <this folder> --video V.mp4 --question Q`.", ""]
    return "\n".join(lines)


@click.command("export", short_help="Write one checkpoint of a run as a folder with a model card.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("iteration", metavar="ITER")
@click.argument("out", type=click.Path())
@click.option("--grpo", is_flag=True, help="Iteration ITER's GRPO checkpoint (iterK/grpo/model) instead of its "
                                           "model (iterK/dpo/model for K >= 1).")
@main_guard
def export(run_dir: str, iteration: str, out: str, grpo: bool) -> None:
    """Write the model of iteration ITER of RUN_DIR (a number, or base) to OUT: the checkpoint, its
    settings.json and a model card (README.md). OUT must not exist.

    \b
    veripo export . 3 veripo-iter3
    """
    from veripo.jsonio import atomic_path

    run = Path(run_dir).resolve()
    rel = checkpoint_of(iteration, grpo)
    model = run / rel
    if not model.is_dir():
        raise InputError(model, "no checkpoint there (an unfinished run, or another iteration count)")
    if os.path.exists(out):
        raise InputError(out, "exists already: export writes a new folder")
    chain = stage_chain(run, rel)
    job, source = checkpoint_job(model)
    source = source.replace(str(run) + os.sep, "")
    scores = score_rows(run, rel)
    settings = {"checkpoint": rel, "inference": job, "inference_from": source,
                "run": {stage_name(ckpt): record for ckpt, _, record in chain}}
    with atomic_path(out) as tmp:
        shutil.copytree(model, tmp)
        (Path(tmp) / EXPORTED_SETTINGS).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
        (Path(tmp) / "README.md").write_text(model_card(run, rel, chain, scores, job, source))
    summary = ", ".join(f"{s['benchmark']} {with_ci(s['overall'], s.get('ci95'))}" for s in scores) or "no scores"
    click.echo(terminal_safe(f"{out}: {rel} of {run_dir}, {len(chain)} training stages, {summary}"))
