"""One typed config per stage: each is built from its section of config.yaml (and of the 7B config
merged over it), refuses unknown and missing keys naming them, documents every field, and what a job
ran with lands, whole, in the settings.json beside its outputs."""
import copy
import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import yaml

from conftest import ROOT
from veripo import stage_config as sc
from veripo.config import ConfigError, grpo_stage, validate_config
from veripo.eval.settings import job_settings
from veripo.run_settings import merge_layers as merged


@pytest.fixture(scope="module", params=["default", "7b"])
def config(request, default_config):
    if request.param == "default":
        return default_config
    return validate_config(merged(default_config, yaml.safe_load((ROOT / "configs/qwen25vl-7b.yaml").read_text())))


def policy_job(cfg: dict, **sections) -> dict:
    """A policy job's --config as the rules build it (rules/common.smk policy_args)."""
    return {"dtype": cfg["dtype"], "attn_implementation": cfg.get("attn_implementation"), "prompts": cfg["prompts"],
            "media": cfg["media"], "train": cfg["train"], **sections}


def sections(cfg: dict) -> list[tuple[type, dict, dict]]:
    """(class, section, from_config keyword arguments) of every stage config and job config."""
    return [
        (sc.WarmupConfig, cfg["warmup"], {}),
        (sc.GRPOConfig, cfg["grpo"], {"iteration": 1}),
        (sc.VerifierConfig, cfg["verifier"], {}),
        (sc.PairsConfig, cfg["pairs"], {}),
        (sc.DPOConfig, cfg["dpo"], {}),
        (sc.EvalConfig, cfg["eval"], {}),
        (sc.WarmupJob, policy_job(cfg, warmup=cfg["warmup"]), {}),
        (sc.GRPOJob, policy_job(cfg, grpo=grpo_stage(cfg, 1)), {}),
        (sc.VerifierSampleJob, policy_job(cfg, grpo=grpo_stage(cfg, 2), rollouts=cfg["verifier"]["rollouts"]), {}),
        (sc.DPOJob, policy_job(cfg, dpo=cfg["dpo"]), {}),
        (sc.EvalJob, job_settings(cfg, "tomato"), {}),
    ]


def test_every_stage_config_takes_its_section(config):
    for cls, section, kw in sections(config):
        built = cls.from_config(section, **kw)
        assert isinstance(built, cls)
        as_dict = dataclasses.asdict(built)
        if cls is not sc.GRPOConfig:  # its schedule is resolved: see the next test
            kept = {k: v for k, v in section.items() if k != "benchmarks"}  # these gain their unset overrides
            assert {k: as_dict[k] for k in kept} == kept, cls
        assert cls.from_config(json.loads(json.dumps(as_dict))) == built, cls  # settings.json reads back


def test_grpo_schedule_resolves_as_the_rules_do(config):
    for iteration in range(5):
        built = sc.GRPOConfig.from_config(config["grpo"], iteration=iteration)
        assert dataclasses.asdict(built) == grpo_stage(config, iteration)
        assert sc.GRPOConfig.from_config(grpo_stage(config, iteration)) == built
    with pytest.raises(ConfigError, match=r"'grpo' holds the stage schedule \(activation, per_iteration\)"):
        sc.GRPOConfig.from_config(config["grpo"])
    with pytest.raises(ConfigError, match=r"'grpo.lr' is set per stage"):
        sc.GRPOConfig.from_config({**config["grpo"], "lr": 1e-3}, iteration=1)
    bad = copy.deepcopy(config["grpo"])
    bad["per_iteration"][-1]["rollout_bach"] = 4
    n = len(bad["per_iteration"]) - 1
    with pytest.raises(ConfigError, match=rf"unknown config key 'grpo.per_iteration\[{n}\].rollout_bach'"):
        sc.GRPOConfig.from_config(bad, iteration=1)  # checked even where another iteration is resolved


def test_eval_job_is_what_the_rule_sends(config):
    for name in config["eval"]["benchmarks"]:
        job = sc.EvalJob.of(config, name)
        assert sc.EvalJob.from_config(job_settings(config, name)) == job
        bench = config["eval"]["benchmarks"][name]
        assert job.media.fps == bench.get("fps", config["eval"]["media"]["fps"])


@pytest.mark.parametrize("where", ["top", "nested"])
def test_unknown_keys_are_refused_by_name(default_config, where):
    for cls, section, kw in sections(default_config):
        section = copy.deepcopy(section)
        if where == "top":
            section["bogus_key"] = 1
            want = "bogus_key"
        else:
            inner = next((k for k, v in section.items() if isinstance(v, dict) and k not in
                          ("trace_mix", "judge", "vllm", "benchmarks")), None)
            if inner is None:
                continue
            section[inner]["other_bogus"] = 1
            want = f"{inner}.other_bogus"
        with pytest.raises(ConfigError, match=rf"unknown config key '([\w.]+\.)?{want}'"):
            cls.from_config(section, **kw)


def test_a_benchmark_key_is_refused_with_its_path(default_config):
    ev = copy.deepcopy(default_config["eval"])
    ev["benchmarks"]["tomato"]["max_frame"] = 16
    with pytest.raises(ConfigError, match=r"unknown config key 'eval.benchmarks.tomato.max_frame'"):
        sc.EvalConfig.from_config(ev)


def test_missing_keys_and_wrong_types_are_named(default_config):
    dpo = {k: v for k, v in default_config["dpo"].items() if k not in ("beta", "min_pairs")}
    with pytest.raises(ConfigError, match=r"missing config key 'dpo.beta', 'dpo.min_pairs'"):
        sc.DPOConfig.from_config(dpo)
    cases = [(sc.DPOConfig, "lr", "1e-3", "expected a number"), (sc.DPOConfig, "epochs", 1.0, "expected an integer"),
             (sc.DPOConfig, "freeze_vision", 1, "expected true or false"),
             (sc.DPOConfig, "on_too_few_pairs", "pause", "expected one of 'stop', 'skip'"),
             (sc.WarmupConfig, "lr", float("nan"), "expected a number")]
    for cls, key, value, want in cases:
        section = dict(default_config[cls.SECTION], **{key: value})
        with pytest.raises(ConfigError, match=rf"config key '{cls.SECTION}.{key}': {want}"):
            cls.from_config(section)
    bad = dict(default_config["verifier"], rollouts=dict(default_config["verifier"]["rollouts"], source="cached"))
    with pytest.raises(ConfigError, match=r"'verifier.rollouts.source': expected one of 'logged', 'fresh'"):
        sc.VerifierConfig.from_config(bad)


def test_grpo_vllm_max_logprob_gap_is_ours_and_checked(default_config):
    """grpo.vllm holds the engine's arguments plus our bound, which the engine never sees."""
    section = dict(default_config["grpo"], vllm={"enforce_eager": True, "max_logprob_gap": 0.5})
    cfg = sc.GRPOConfig.from_config(section, iteration=1)
    assert cfg.engine_args() == {"enforce_eager": True} and cfg.max_logprob_gap() == 0.5
    assert sc.GRPOConfig.from_config(dict(section, vllm={}), iteration=1).max_logprob_gap() == sc.MAX_LOGPROB_GAP
    assert sc.GRPOConfig.from_config(dict(section, vllm={"max_logprob_gap": None}), iteration=1).max_logprob_gap() is None
    assert sc.GRPOConfig.from_config(default_config["grpo"], iteration=1).max_logprob_gap() == 1.0  # config.yaml's
    for value, want in (("small", "expected a number"), (True, "expected a number"), (-0.1, "expected a number >= 0")):
        with pytest.raises(ConfigError, match=rf"config key 'grpo.vllm.max_logprob_gap': {want}"):
            sc.GRPOConfig.from_config(dict(section, vllm={"max_logprob_gap": value}), iteration=1)


def all_dataclasses() -> list[type]:
    return [obj for obj in vars(sc).values()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == sc.__name__]


def test_every_field_is_documented():
    classes = all_dataclasses()
    assert {sc.WarmupConfig, sc.GRPOConfig, sc.VerifierConfig, sc.DPOConfig, sc.EvalConfig} <= set(classes)
    for cls in classes:
        assert (cls.__doc__ or "").strip(), cls
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help"


def test_every_section_key_is_a_field(default_config):
    """No key of config.yaml's stage sections is left without a field (none is dropped on the way)."""
    pairs = [(sc.WarmupConfig, "warmup"), (sc.VerifierConfig, "verifier"), (sc.DPOConfig, "dpo"),
             (sc.PairsConfig, "pairs"), (sc.EvalConfig, "eval"), (sc.TrainConfig, "train"), (sc.MediaConfig, "media")]
    for cls, key in pairs:
        assert set(default_config[key]) <= {f.name for f in dataclasses.fields(cls)}, key
    grpo = {f.name for f in dataclasses.fields(sc.GRPOConfig)}
    stage = {f.name for f in dataclasses.fields(sc.GRPOStage)}
    assert set(default_config["grpo"]) - {"activation", "per_iteration"} == grpo - stage
    assert set(default_config["grpo"]["activation"]) == stage


def run_script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True)


def assert_every_field(record: dict, job) -> None:
    """settings.json holds every field of the job's config object, with the value it ran with."""
    assert record["config"] == json.loads(json.dumps(dataclasses.asdict(job)))

    def walk(cls, value):
        assert set(value) == {f.name for f in dataclasses.fields(cls)}, cls
        for name, hint in typing.get_type_hints(cls).items():
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint, value[name])

    walk(type(job), record["config"])


def test_verifier_judge_writes_its_settings(tmp_path, tiny_dir, default_config):
    row = {"rollout_id": "q@r0#0", "query_id": "q", "iteration": 1,
           "completion": "<think>It is red, so the answer is A.</think><answer>$A$</answer>",
           "query": {"id": "q", "answer": "A", "answer_type": "multiple_choice", "question": "Colour?"}}
    rollouts = tmp_path / "iter1/grpo/rollouts.jsonl"
    rollouts.parent.mkdir(parents=True)
    rollouts.write_text(json.dumps(row) + "\n")
    out = tmp_path / "iter1/verifier/verdicts.jsonl"
    p = run_script("verifier_judge", "--rollouts", rollouts, "--model", tiny_dir, "--config",
                   json.dumps(default_config["verifier"]), "--out", out, "--stats", out.with_name("stats.json"))
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((tmp_path / "iter1/verifier/settings.json").read_text())
    assert record["inputs"] == {"rollouts": str(rollouts), "model": tiny_dir} and record["world_size"] == 1
    assert_every_field(record, sc.VerifierConfig.from_config(default_config["verifier"]))

    p = run_script("verifier_judge", "--rollouts", rollouts, "--model", tiny_dir, "--config",
                   json.dumps(dict(default_config["verifier"], min_think_token=3)), "--out", tmp_path / "v.jsonl",
                   "--stats", tmp_path / "s.json")
    assert p.returncode == 2 and "unknown config key 'verifier.min_think_token'" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "v.jsonl").exists()


@pytest.mark.slow
def test_dpo_without_pairs_writes_its_settings_and_the_model_unchanged(tmp_path, tiny_dir, default_config):
    from safetensors.torch import load_file

    pairs = tmp_path / "iter1/dpo/pairs_skipped.jsonl"
    pairs.parent.mkdir(parents=True)
    pairs.write_text("")
    cfg = policy_job(default_config, dpo=default_config["dpo"])
    cfg["train"] = dict(cfg["train"], engine="torch")
    out = tmp_path / "iter1/dpo"
    p = run_script("dpo_train", "--model", tiny_dir, "--pairs", pairs, "--config", json.dumps(cfg),
                   "--out-model", out / "model", "--out-metrics", out / "metrics.jsonl",
                   "--out-heldout", out / "heldout.json", "--checkpoint-dir", tmp_path / "ckpt")
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((out / "settings.json").read_text())
    assert record["inputs"] == {"model": tiny_dir, "pairs": str(pairs)} and record["world_size"] == 1
    assert_every_field(record, sc.DPOJob.from_config(cfg))
    a, b = load_file(f"{tiny_dir}/model.safetensors"), load_file(str(out / "model/model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert json.loads((out / "model/veripo_stage.json").read_text())["pairs"] == 0


@pytest.mark.slow
def test_warmup_writes_its_settings(tmp_path, tiny_dir, default_config, video_set):
    from veripo import jsonio

    data = tmp_path / "data/warmup.jsonl"
    jsonio.write_jsonl(data, video_set[:2])
    cfg = policy_job(default_config, warmup=dict(default_config["warmup"], steps=2, batch_size=2))
    p = run_script("base_warmup", "--model", tiny_dir, "--data", data, "--config", json.dumps(cfg),
                   "--out", tmp_path / "base/model", "--metrics", tmp_path / "base/warmup_metrics.jsonl")
    assert p.returncode == 0, p.stderr[-2000:]
    record = json.loads((tmp_path / "base/warmup_settings.json").read_text())
    assert record["inputs"] == {"model": tiny_dir, "data": str(data)}
    assert_every_field(record, sc.WarmupJob.from_config(cfg))
    assert len((tmp_path / "base/warmup_metrics.jsonl").read_text().splitlines()) == 2
