import copy

import pytest
import yaml

from veripo.config import ConfigError, grpo_stage, load_config, validate_config

from conftest import ROOT


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_default_and_7b_configs_validate():
    default = load_config(ROOT / "config.yaml")
    seven_b = yaml.safe_load((ROOT / "configs" / "qwen25vl-7b.yaml").read_text())
    merged = validate_config(deep_merge(default, seven_b))
    assert grpo_stage(merged, 0)["global_batch"] == 128 and grpo_stage(merged, 0)["lr"] == 1e-6
    assert grpo_stage(merged, 1)["lr"] == 1e-6 and grpo_stage(merged, 2)["lr"] == 5e-7
    assert merged["dpo"]["beta"] == 0.1 and merged["dpo"]["global_batch"] == 32


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["grpo"].update(rollouts_per_query=1), "grpo.rollouts_per_query"),
    (lambda c: c["grpo"].update(clip_eps="big"), "grpo.clip_eps"),
    (lambda c: c["dpo"].pop("beta"), "beta"),
    (lambda c: c["pairs"].update(kinds=["consistency", "bogus"]), "pairs.kinds.1"),
    (lambda c: c["eval"]["benchmarks"].update(imagenet={"questions": "x", "video_root": "y"}), "imagenet"),
    (lambda c: c["prompts"].update(option="no placeholder"), "prompts.option"),
    (lambda c: c["verifier"].update(numeric_wrong=0.95), "verifier.numeric_wrong"),
    (lambda c: c["media"].update(min_frames=64), "media.min_frames"),
    (lambda c: c["curriculum"].update(discard_fraction=1.5), "curriculum.discard_fraction"),
])
def test_bad_config_names_the_key(default_config, mutate, needle):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config(cfg)


def test_grpo_stage_lookup(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["grpo"]["activation"]["lr"] = 1.0
    cfg["grpo"]["per_iteration"] = [dict(cfg["grpo"]["per_iteration"][0], lr=2.0),
                                    dict(cfg["grpo"]["per_iteration"][0], lr=3.0)]
    assert grpo_stage(cfg, 0)["lr"] == 1.0
    assert grpo_stage(cfg, 1)["lr"] == 2.0
    assert grpo_stage(cfg, 2)["lr"] == 3.0
    assert grpo_stage(cfg, 7)["lr"] == 3.0  # the last entry holds for later iterations
    assert grpo_stage(cfg, 1)["rollouts_per_query"] == cfg["grpo"]["rollouts_per_query"]
