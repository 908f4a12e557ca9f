"""A checkpoint's inference settings, as ``veripo infer`` and ``veripo export`` find them.

An evaluation job's settings (``EvalJob``: dtype, attention, prompts, decoding, media) are what a
checkpoint answers with. They are never in the checkpoint folder itself, so they come from, in order:

1. ``settings.json`` inside the folder, under ``inference``: an exported checkpoint (``veripo export``);
2. the run's evaluation of this checkpoint (``<run>/iterK/eval*/<bench>.run.json``, whose ``model`` is
   the checkpoint), the first benchmark in ``BENCHMARKS`` order: what the predictions were made with;
3. the training job's settings beside the folder (``iterK/{grpo,dpo}/settings.json``,
   ``base/warmup_settings.json``): dtype, attention, prompts and media as trained, the answer length of
   the GRPO stage that made it (DPO's: of the GRPO stage it started from); training settings hold no
   evaluation decoding, so temperature, top-p and repetition penalty are the repository config's;
4. the repository's config.yaml (a bare Hugging Face folder).

``--configfile A B ...`` replaces all four: the repository config.yaml with A, then B, merged over it key by
key the way Snakemake merges ``--configfile`` (a mapping merges into a mapping, any other value
replaces), so ``--configfile config.yaml configs/qwen25vl-7b.yaml`` is what a 7B run was made with.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict
from pathlib import Path

from veripo.errors import InputError
from veripo.run_settings import merge_layers

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"
EXPORTED_SETTINGS = "settings.json"
# The checkpoints a run writes, relative to its directory (README "What runs").
RUN_CHECKPOINT = re.compile(r"(base/model|iter\d+/(grpo|dpo)/model)")
TRAINING_SETTINGS = ("settings.json", "warmup_settings.json")


def read_layer(path: str | os.PathLike) -> dict:
    """One config file as a mapping; a file that is not a YAML mapping is an InputError naming it."""
    import yaml

    from veripo.jsonio import read_text

    try:
        layer = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(path, f"not valid YAML ({getattr(exc, 'problem', None) or 'unparsable'})",
                         line=mark.line + 1 if mark else None) from None
    if not isinstance(layer, dict):
        raise InputError(path, f"expected a mapping of config keys, got {type(layer).__name__}")
    return layer


def layered_config(paths: tuple[str, ...] = ()) -> dict:
    """The repository config.yaml with each of ``paths`` merged over it in turn, validated."""
    from veripo.config import validate_config

    config: dict = {}
    for path in (REPO_CONFIG, *paths):
        config = merge_layers(config, read_layer(path))
    return validate_config(config)


def config_job(config: dict) -> dict:
    """The evaluation settings of a whole config: its eval section, without any benchmark's media overrides."""
    from veripo.stage_config import EvalConfig, EvalJob, PromptTemplates

    ev = EvalConfig.from_config(config["eval"])
    return asdict(EvalJob(dtype=config["dtype"], attn_implementation=config.get("attn_implementation"),
                          prompts=PromptTemplates.from_config(config["prompts"]), generation=ev.generation(),
                          media=ev.media, skip_missing_videos=False))


def checked_job(job: dict, source: str) -> dict:
    """``job`` as EvalJob's fields, a key or type it does not take an InputError naming ``source``."""
    from veripo.config import ConfigError
    from veripo.stage_config import EvalJob

    try:
        return asdict(EvalJob.from_config(job, ""))
    except ConfigError as exc:
        raise InputError(source, str(exc)) from None


def run_checkpoint(model: str | os.PathLike) -> tuple[Path, str] | None:
    """(run directory, the checkpoint's path in it) when ``model`` is a checkpoint a run wrote."""
    model = Path(model).resolve()
    for parents in (2, 3):
        if len(model.parents) > parents:
            run_dir = model.parents[parents - 1]
            rel = model.relative_to(run_dir).as_posix()
            if RUN_CHECKPOINT.fullmatch(rel):
                return run_dir, rel
    return None


def eval_records(run_dir: Path, rel: str) -> list[Path]:
    """The run's evaluation records (``*.run.json``) of checkpoint ``rel``, in BENCHMARKS order."""
    from veripo.eval.benchmarks import BENCHMARKS
    from veripo.jsonio import read_json

    found = []
    for path in sorted(run_dir.glob("*/eval*/*.run.json")):
        record = read_json(path)
        if isinstance(record, dict) and os.path.normpath(str(record.get("model", ""))) == rel:
            found.append(path)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    return sorted(found, key=lambda p: (order.get(p.name.removesuffix(".run.json"), len(order)), str(p)))


def training_settings(run_dir: Path, rel: str) -> Path | None:
    """The settings file the job that wrote checkpoint ``rel`` left beside it."""
    for name in TRAINING_SETTINGS:
        path = (run_dir / rel).parent / name
        if path.is_file():
            return path
    return None


def stage_chain(run_dir: Path, rel: str) -> list[tuple[str, Path, dict]]:
    """(checkpoint, settings file, its content) of ``rel`` and of each checkpoint it was trained from, newest
    first, following each job's ``inputs.model`` back to the first one without settings (the base)."""
    from veripo.jsonio import read_json

    chain, seen = [], set()
    while rel not in seen:
        seen.add(rel)
        path = training_settings(run_dir, rel) if RUN_CHECKPOINT.fullmatch(rel) else None
        if path is None:
            break
        record = read_json(path)
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise InputError(path, "expected a job's settings, with a 'config' mapping", field="config")
        chain.append((rel, path, record))
        rel = os.path.normpath(str(record.get("inputs", {}).get("model", "")))
    return chain


def training_job(run_dir: Path, rel: str) -> tuple[dict, str] | None:
    """Inference settings from the training job's settings (see the module's docstring, 3.)."""
    chain = stage_chain(run_dir, rel)
    if not chain:
        return None
    _, path, record = chain[0]
    config = record["config"]
    generation = config_job(layered_config())["generation"]
    grpo = next((r["config"]["grpo"] for _, _, r in chain if isinstance(r["config"].get("grpo"), dict)), None)
    if grpo and "max_new_tokens" in grpo:
        generation["max_new_tokens"] = grpo["max_new_tokens"]
    job = {"dtype": config.get("dtype"), "attn_implementation": config.get("attn_implementation"),
           "prompts": config.get("prompts"), "media": config.get("media"), "generation": generation,
           "skip_missing_videos": False}
    return checked_job(job, str(path)), f"{path} (as trained; decoding: {REPO_CONFIG}'s eval section)"


def checkpoint_job(model: str | os.PathLike) -> tuple[dict, str]:
    """(inference settings, where they came from) of checkpoint folder ``model``; see the module's docstring."""
    from veripo.jsonio import read_json

    exported = Path(model) / EXPORTED_SETTINGS
    if exported.is_file():
        record = read_json(exported)
        if not isinstance(record, dict) or "inference" not in record:
            raise InputError(exported, "missing required field", field="inference")
        return checked_job(record["inference"], str(exported)), str(exported)
    found = run_checkpoint(model)
    if found:
        run_dir, rel = found
        records = eval_records(run_dir, rel)
        if records:
            record = read_json(records[0])
            if not isinstance(record.get("settings"), dict):
                raise InputError(records[0], "missing required field", field="settings")
            return checked_job(record["settings"], str(records[0])), f"{records[0]} (the evaluation of this checkpoint)"
        trained = training_job(run_dir, rel)
        if trained:
            return trained
    return config_job(layered_config()), f"{REPO_CONFIG} (no settings found for {model})"
