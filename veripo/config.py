"""Config validation (JSON Schema + cross-field rules) and per-stage hyper-parameter lookup."""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from veripo.errors import InputError
from veripo.jsonio import read_text

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


# veripo/model/tiny.py builds the tiny vision tower with this many attention heads.
TINY_VISION_HEADS = 2


class ConfigError(ValueError):
    pass


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _is_integer(_checker, value) -> bool:
    # jsonschema counts 2.0 as an integer; an iteration count of 2.0 names targets iter2.0/...
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(_checker, value) -> bool:
    # NaN passes every minimum/maximum comparison, and YAML's .inf or JSON's 1e400 (inf) would be
    # taken as a real learning rate or timeout.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _message(error) -> str:
    value, types = error.instance, error.validator_value
    if error.validator == "type" and isinstance(value, float):
        types = [types] if isinstance(types, str) else types
        if not math.isfinite(value) and "number" in types:
            return f"expected a finite number, got {value}"
        if value.is_integer() and "integer" in types:
            return f"expected an integer, got {value} (write {int(value)})"
    return error.message


def check_tiny_model(spec: dict) -> None:
    """ConfigError naming the ``tiny_model`` key whose attention heads cannot be built."""
    hidden, heads, kv_heads = spec["hidden_size"], spec["num_heads"], spec["num_kv_heads"]
    if hidden % heads:
        raise ConfigError(f"config key 'tiny_model.num_heads': {heads} heads do not divide "
                          f"tiny_model.hidden_size {hidden}")
    if (hidden // heads) % 2:
        raise ConfigError(f"config key 'tiny_model.num_heads': {heads} heads of {hidden // heads} dimensions; "
                          f"rotary embeddings need an even head size (hidden_size / num_heads)")
    if heads % kv_heads:
        raise ConfigError(f"config key 'tiny_model.num_kv_heads': {kv_heads} key/value heads do not divide "
                          f"tiny_model.num_heads {heads}")
    # The vision tower's 2-D rotary embedding splits each head in height and width halves of even size.
    multiple = 4 * TINY_VISION_HEADS
    if spec["vision_hidden_size"] % multiple:
        raise ConfigError(f"config key 'tiny_model.vision_hidden_size': {spec['vision_hidden_size']} is not a "
                          f"multiple of {multiple} ({TINY_VISION_HEADS} vision heads, each a multiple of 4 wide)")


def validate_config(config: dict, schema_path: str | Path = SCHEMA, check_arms: bool = True) -> dict:
    """Raise ConfigError naming the offending key; returns the config unchanged."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(_validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"config key '{_where(e.absolute_path)}': {_message(e)}" for e in errors[:10]]
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
    if "tiny_model" in config:
        check_tiny_model(config["tiny_model"])
    if config["base_model"] == "tiny":
        for key in ("tiny_model", "warmup"):
            if key not in config:
                raise ConfigError(f"config key '{key}' is required when base_model is 'tiny'")
        if sum(config["warmup"]["trace_mix"].values()) <= 0:
            raise ConfigError("config key 'warmup.trace_mix' must have a positive share")
    synthetic = config["data"]["synthetic"]
    # rule data_synthetic runs whenever it writes something: everything, or with own data the tiny base's
    # warm-up traces and the sets `keep` names
    if synthetic["enabled"] or synthetic.get("keep") or config["base_model"] == "tiny":
        missing = {"seed", "n_warmup", "n_train_video", "n_train_activation", "n_benchmark", "tasks",
                   "video_size", "video_fps", "video_seconds"} - set(synthetic)
        if missing:
            why = "enabled" if synthetic["enabled"] else "it writes the tiny base's warm-up or keep's sets"
            raise ConfigError(f"config key 'data.synthetic' lacks {sorted(missing)} while {why}")
    from veripo.arms import arm_config, arm_problems

    problems = arm_problems(config)
    if problems:
        raise ConfigError(problems[0])
    if check_arms:
        # each arm's merged config must be a valid config too (a bad override names its arm)
        for arm in config.get("arms", {}):
            try:
                validate_config(arm_config(config, arm, 0), schema_path, check_arms=False)
            except ConfigError as exc:
                detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip() != "invalid config:")
                raise ConfigError(f"config key 'arms.{arm}' makes an invalid config: {detail}") from None
    for i, name in enumerate(config["report"]["benchmarks"]):
        if name not in config["eval"]["benchmarks"]:
            raise ConfigError(f"config key 'report.benchmarks[{i}]': {name!r} is not one of eval.benchmarks "
                              f"({', '.join(config['eval']['benchmarks'])})")
    return config


def load_config(path: str | Path) -> dict:
    """The config file, validated; a file that is not YAML is an InputError naming the file and line."""
    text = read_text(path)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"not valid YAML ({problem})", line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise InputError(path, "YAML nested too deeply to parse") from None
    if not isinstance(config, dict):
        raise InputError(path, f"expected a mapping of config keys, got {type(config).__name__}")
    return validate_config(config)


def rule_settings(config: dict, name: str) -> dict:
    """Resources of rule ``name``: its ``resources`` entry over ``resources.default``."""
    return {**config["resources"]["default"], **config["resources"].get(name, {})}


def grpo_stage(config: dict, iteration: int) -> dict:
    """Hyper-parameters of the GRPO stage of ``iteration`` (0 = reasoning activation)."""
    g = config["grpo"]
    stage = g["activation"] if iteration == 0 else g["per_iteration"][min(iteration, len(g["per_iteration"])) - 1]
    common = {k: v for k, v in g.items() if k not in ("activation", "per_iteration")}
    return {**common, **stage}
