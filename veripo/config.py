"""Config validation (JSON Schema + cross-field rules) and per-stage hyper-parameter lookup."""
from __future__ import annotations

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_config(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Raise ConfigError naming the offending key; returns the config unchanged."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors[:10]:
            if e.validator == "additionalProperties":
                lines.append(f"config key '{_where(e.absolute_path)}': {e.message}")
            else:
                lines.append(f"config key '{_where(e.absolute_path)}': {e.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    v = config["verifier"]
    if v["numeric_wrong"] >= v["numeric_right"]:
        raise ConfigError("config key 'verifier.numeric_wrong' must be below 'verifier.numeric_right'")
    for key in ("media", "eval.media"):
        m = config["media"] if key == "media" else config["eval"]["media"]
        if m["min_frames"] > m["max_frames"]:
            raise ConfigError(f"config key '{key}.min_frames' exceeds '{key}.max_frames'")
        if m["min_pixels"] > m["max_pixels"]:
            raise ConfigError(f"config key '{key}.min_pixels' exceeds '{key}.max_pixels'")
    for name in ("grpo_train", "dpo_train"):
        r = rule_settings(config, name)
        world = r["nodes"] * r["procs_per_node"]
        if world > 1 and config["train"]["engine"] != "deepspeed":
            raise ConfigError(f"config key 'resources.{name}' asks for {world} processes: 'train.engine' must be deepspeed")
        if name == "grpo_train":
            stages = [config["grpo"]["activation"], *config["grpo"]["per_iteration"]]
            if any(st["rollout_batch"] % world for st in stages):
                raise ConfigError(f"config key 'grpo.*.rollout_batch' must be divisible by the {world} training "
                                  f"processes of 'resources.grpo_train'")
    if config["base_model"] == "tiny":
        for key in ("tiny_model", "warmup"):
            if key not in config:
                raise ConfigError(f"config key '{key}' is required when base_model is 'tiny'")
        if sum(config["warmup"]["trace_mix"].values()) <= 0:
            raise ConfigError("config key 'warmup.trace_mix' must have a positive share")
    if config["data"]["synthetic"]["enabled"]:
        missing = {"seed", "n_warmup", "n_train_video", "n_train_activation", "n_benchmark", "tasks",
                   "video_size", "video_fps", "video_seconds"} - set(config["data"]["synthetic"])
        if missing:
            raise ConfigError(f"config key 'data.synthetic' lacks {sorted(missing)} while enabled")
    return config


def load_config(path: str | Path) -> dict:
    return validate_config(yaml.safe_load(Path(path).read_text()))


def rule_settings(config: dict, name: str) -> dict:
    """Resources of rule ``name``: its ``resources`` entry over ``resources.default``."""
    return {**config["resources"]["default"], **config["resources"].get(name, {})}


def grpo_stage(config: dict, iteration: int) -> dict:
    """Hyper-parameters of the GRPO stage of ``iteration`` (0 = reasoning activation)."""
    g = config["grpo"]
    stage = g["activation"] if iteration == 0 else g["per_iteration"][min(iteration, len(g["per_iteration"])) - 1]
    common = {k: v for k, v in g.items() if k not in ("activation", "per_iteration")}
    return {**common, **stage}
