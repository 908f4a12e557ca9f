import copy
import re

import pytest
import yaml

from veripo.config import ConfigError, grpo_stage, load_config, validate_config
from veripo.run_settings import merge_layers

from conftest import ROOT


def test_default_and_7b_configs_validate():
    default = load_config(ROOT / "config.yaml")
    seven_b = yaml.safe_load((ROOT / "configs" / "qwen25vl-7b.yaml").read_text())
    merged = validate_config(merge_layers(default, seven_b))
    assert grpo_stage(merged, 0)["global_batch"] == 128 and grpo_stage(merged, 0)["lr"] == 1e-6
    assert grpo_stage(merged, 1)["lr"] == 1e-6 and grpo_stage(merged, 2)["lr"] == 5e-7
    assert merged["dpo"]["beta"] == 0.1 and merged["dpo"]["global_batch"] == 32
    # the tiny default samples with our HF sampler; the 7B with vLLM where the job's env and GPU allow it
    assert default["grpo"]["rollout_backend"] == "hf" and merged["grpo"]["rollout_backend"] == "auto"


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
    (lambda c: c["grpo"].update(rollout_backend="sglang"), "grpo.rollout_backend"),
    (lambda c: c["grpo"].update(vllm={"gpu_memory_utilization": 1.5}), "grpo.vllm.gpu_memory_utilization"),
    (lambda c: c["grpo"].update(vllm={"max_logprob_gap": -1}), "grpo.vllm.max_logprob_gap"),
    (lambda c: c["grpo"].update(vllm={"max_logprob_gap": "small"}), "grpo.vllm.max_logprob_gap"),
    (lambda c: c["train"].update(logprob_chunk=0), "train.logprob_chunk"),
    (lambda c: c["media"].update(frame_cache=""), "media.frame_cache"),
    (lambda c: c.update(vllm_python=""), "vllm_python"),
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


def _set(key: str, value):
    """A mutation setting the dotted ``key`` (list indices as numbers) to ``value``."""
    def mutate(cfg):
        *parents, last = [int(p) if p.isdigit() else p for p in key.split(".")]
        node = cfg
        for p in parents:
            node = node[p]
        node[last] = value
    return mutate


def _names(key: str, then: str = "") -> str:
    """A pattern for the error line of config key ``key``, followed by ``then`` (a pattern)."""
    return "config key '" + re.escape(key) + "': " + then


@pytest.mark.parametrize("key,value", [
    ("iterations", 2.0),
    ("dpo.epochs", 1.0),
    ("grpo.per_iteration.0.epochs", 1.0),
    ("tiny_model.hidden_size", 64.0),
    ("resources.default.runtime", 30.0),
    ("iterations", True),
])
def test_integer_keys_take_only_integers(default_config, key, value):
    cfg = copy.deepcopy(default_config)
    _set(key, value)(cfg)
    with pytest.raises(ConfigError, match=_names(key, ".*integer")):
        validate_config(cfg)


@pytest.mark.parametrize("key", ["grpo.kl_coef", "eval.temperature", "dpo.lr", "verifier.judge.timeout_s",
                                 "dpo.heldout_fraction", "grpo.per_iteration.0.lr"])
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1.0e+400"])
def test_non_finite_numbers_are_rejected(default_config, key, text):
    cfg = copy.deepcopy(default_config)
    _set(key, yaml.safe_load(f"v: {text}")["v"])(cfg)
    with pytest.raises(ConfigError, match=_names(key, "expected a finite number")):
        validate_config(cfg)


def test_json_1e400_is_rejected(default_config):
    import json

    cfg = copy.deepcopy(default_config)
    cfg["grpo"]["temperature"] = json.loads("1e400")  # inf
    with pytest.raises(ConfigError, match=r"'grpo\.temperature': expected a finite number, got inf"):
        validate_config(cfg)


@pytest.mark.parametrize("key", ["base_model", "data.train_video", "data.train_activation", "train.zero_config",
                                 "eval.benchmarks.vsi_bench.questions", "eval.benchmarks.tomato.video_root",
                                 "verifier.judge.model", "verifier.judge.api_key_env"])
def test_empty_paths_are_rejected(default_config, key):
    cfg = copy.deepcopy(default_config)
    _set(key, "")(cfg)
    with pytest.raises(ConfigError, match=_names(key, "'' should be non-empty")):
        validate_config(cfg)


@pytest.mark.parametrize("shape,key", [
    ({"hidden_size": 60, "num_heads": 8}, "tiny_model.num_heads"),           # 7.5 dimensions per head
    ({"hidden_size": 48, "num_heads": 16}, "tiny_model.num_heads"),          # odd head size: rotary split fails
    ({"num_heads": 4, "num_kv_heads": 3}, "tiny_model.num_kv_heads"),        # grouped-query attention
    ({"num_heads": 4, "num_kv_heads": 8}, "tiny_model.num_kv_heads"),
    ({"vision_hidden_size": 12}, "tiny_model.vision_hidden_size"),           # 2 heads of 6: 2-D rotary fails
    ({"vision_hidden_size": 20}, "tiny_model.vision_hidden_size"),
])
def test_tiny_model_heads_must_divide(default_config, shape, key):
    cfg = copy.deepcopy(default_config)
    cfg["tiny_model"].update(shape)
    with pytest.raises(ConfigError, match=_names(key)):
        validate_config(cfg)


def test_tiny_model_shapes_that_build_are_accepted(default_config):
    # each of these builds and runs a forward pass (head sizes 2 and 16, vision heads of 4)
    shapes = [{"hidden_size": 16, "num_heads": 8, "num_kv_heads": 8},
              {"hidden_size": 16, "num_heads": 1, "num_kv_heads": 1},
              {"vision_hidden_size": 8}]
    for shape in shapes:
        cfg = copy.deepcopy(default_config)
        cfg["tiny_model"].update(shape)
        validate_config(cfg)


def test_yaml_config_file_with_float_iterations(tmp_path):
    text = (ROOT / "config.yaml").read_text().replace("\niterations: 3\n", "\niterations: 2.0\n")
    assert "iterations: 2.0" in text
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"'iterations': expected an integer, got 2\.0 \(write 2\)"):
        load_config(path)
