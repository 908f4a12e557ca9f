"""Logic that lives in one place: the response grammar, the option-letter suffix, file hashes, the checks
only the config schema makes, the curriculum's media paths, the synthetic seed plan, and the test-only
fault injection (a sitecustomize the tests write, not a hook in the production CLI)."""
import copy
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, fail_once_env
from veripo import answers, prompts, rewards
from veripo.config import ConfigError, validate_config
from veripo.hashing import sha256_file, sha256_named_files
from veripo.verify.judges.rule import rule_judge

RESPONSES = [
    "<think>I see it so the answer is B.</think><answer>B</answer>",
    "  <think> x </think>\n<answer> 3 </answer>  ",
    "<think>a</think><answer>1</answer><answer>2</answer>",
    "<think></think><answer>C</answer>",
    "<answer>C</answer><think>so the answer is C</think>",
    "no tags at all",
    "<think>unclosed<answer>4</answer>",
]


@pytest.mark.parametrize("text", RESPONSES)
def test_every_reader_parses_a_response_alike(text):
    think, answer = answers.extract_think(text), answers.extract_answer(text)
    layout = answers.think_then_answer(text)
    if layout is not None:
        assert (layout[0].strip(), layout[1].strip()) == (think, answer)
    if rewards.is_well_formed(text):
        assert layout is not None and think
    verdict = rule_judge(text)
    # The rule judge sees the scorer's answer: no answer content means nothing to compare.
    if answer is None or think is None:
        assert verdict["verdict"] == "UNKNOWN"


def test_the_scorer_keeps_the_first_answer_tag():
    assert answers.extract_answer(RESPONSES[2]) == "1"
    assert not rewards.is_well_formed(RESPONSES[2])


def test_synthetic_questions_carry_the_suffix_every_prompt_strips(tmp_path):
    from veripo.data import synthetic_benchmarks
    from veripo.eval.benchmarks import question_text

    records = synthetic_benchmarks.write_benchmark("video_mme", str(tmp_path), 2, 0, 32, 4, 0.5)
    for rec in records:
        assert rec["processed_question"].endswith(prompts.MC_SUFFIX)
        assert question_text(rec) == prompts.strip_mc_suffix(rec["processed_question"])
        assert not question_text(rec).endswith(prompts.MC_SUFFIX)


def test_file_hashes(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.bin"
    a.write_bytes(os.urandom(3 << 20))  # several read chunks
    b.write_bytes(b"weights")
    assert sha256_file(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_file(a, 1000) == hashlib.sha256(a.read_bytes()[:1000]).hexdigest()
    expected = hashlib.sha256(b"a.safetensors" + a.read_bytes() + b"b.bin" + b"weights").hexdigest()
    assert sha256_named_files([a, b]) == expected

    from veripo.eval.provenance import checkpoint_hash

    assert checkpoint_hash(str(tmp_path)) == expected
    assert checkpoint_hash("Qwen/Qwen2.5-VL-7B-Instruct") == "unhashed:Qwen/Qwen2.5-VL-7B-Instruct"


def _judge_fields(**fields):
    def edit(cfg):
        judge = cfg["verifier"]["judge"]
        judge.update(fields)
        for key in [k for k, v in fields.items() if v is None]:
            del judge[key]
    return edit


@pytest.mark.parametrize("edit,key,needle", [
    (_judge_fields(backend="oracle"), "verifier.judge.backend", "'oracle' is not one of"),
    (_judge_fields(backend="hf", model=None), "verifier.judge", "'model' is a required property"),
    (_judge_fields(backend="vllm", model="m", prompt=None), "verifier.judge", "'prompt' is a required property"),
    (_judge_fields(backend="http", url=None), "verifier.judge", "'url' is a required property"),
    (_judge_fields(backend="hf", model="m", prompt="{reasoning} only"), "verifier.judge.prompt",
     "does not match.*answer"),
    (_judge_fields(backend="hf", model="m", prompt="{answer} only"), "verifier.judge.prompt",
     "does not match.*reasoning"),
    (lambda cfg: cfg["dpo"].update(on_too_few_pairs="retry"), "dpo.on_too_few_pairs", "'retry' is not one of"),
    (lambda cfg: cfg["eval"].update(backend="tgi"), "eval.backend", "'tgi' is not one of"),
])
def test_the_schema_alone_refuses_what_the_code_no_longer_checks(default_config, edit, key, needle):
    cfg = copy.deepcopy(default_config)
    edit(cfg)
    with pytest.raises(ConfigError, match=f"config key '{key}'.*{needle}"):
        validate_config(cfg)


def test_schema_benchmark_names_are_the_loaders(default_config):
    import yaml

    from veripo.config import SCHEMA
    from veripo.data.synthetic_benchmarks import WRITERS
    from veripo.eval.benchmarks import BENCHMARKS

    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert props["eval"]["properties"]["benchmarks"]["propertyNames"]["enum"] == list(BENCHMARKS)
    synthetic = props["data"]["properties"]["synthetic"]["properties"]["benchmark_sizes"]["propertyNames"]["enum"]
    assert synthetic == list(WRITERS)


def test_filtered_queries_point_at_the_same_media(tmp_path, monkeypatch):
    from veripo.data.curriculum import next_queries, relocate_media

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/videos").mkdir(parents=True)
    (tmp_path / "data/videos/v.mp4").write_bytes(b"")
    records = [{"id": "a", "video": "data/videos/v.mp4"}, {"id": "b", "image": str(tmp_path / "abs.png")},
               {"id": "c"}]
    moved = relocate_media(records, "iter1/data")
    assert os.path.normpath(os.path.join("iter1/data", moved[0]["video"])) == "data/videos/v.mp4"
    assert moved[1]["image"] == str(tmp_path / "abs.png") and moved[2] == {"id": "c"}
    assert records[0]["video"] == "data/videos/v.mp4"  # the caller's records are left as they were
    rollouts = [{"query_id": q, "reward_accuracy": 1.0} for q in ("a", "b", "c")]
    kept, dropped = next_queries(records, rollouts, 1.0, 0, "iter1/data")
    assert kept == [] and dropped == ["a", "b", "c"]


def test_each_synthetic_set_keeps_its_seed(tmp_path, default_config):
    from veripo.data.synthetic_plan import SETS, make_synthetic_data

    spec = dict(default_config["data"]["synthetic"], n_warmup=2, n_train_video=2, n_train_activation=2,
                n_benchmark=2, benchmark_sizes={"tomato": 2}, video_size=32, video_fps=4, video_seconds=0.5)

    def run(name, **changes):
        root = tmp_path / name
        return make_synthetic_data(dict(spec, **changes), dict.fromkeys(SETS, str(root / "data")),
                                   {"vsi_bench": str(root / "bench"), "tomato": str(root / "bench")})

    base, more = run("base"), run("more", n_train_video=3)
    assert base.train_video == more.train_video[:2] and len(more.train_video) == 3
    assert (base.warmup, base.train_activation, base.benchmarks) == (more.warmup, more.train_activation,
                                                                     more.benchmarks)
    assert all(r["image"].startswith("warmup_activation/") for r in base.warmup if r.get("image"))


def test_data_synthetic_script_writes_what_the_plan_returns(tmp_path, default_config):
    from veripo.data.synthetic_plan import SETS, make_synthetic_data
    from veripo.jsonio import read_json, read_jsonl

    spec = dict(default_config["data"]["synthetic"], n_warmup=2, n_train_video=2, n_train_activation=2,
                n_benchmark=2, video_size=32, video_fps=4, video_seconds=0.5)
    spec.pop("benchmark_sizes", None)
    out = tmp_path / "cli"
    out.mkdir()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "data_synthetic.py"), "--spec", json.dumps(spec),
                    "--warmup", "data/warmup.jsonl", "--train-video", "data/train_video.jsonl",
                    "--train-activation", "data/train_activation.jsonl",
                    "--benchmark", "vsi_bench=data/bench/vsi_bench.json"], cwd=out, check=True)
    expected = make_synthetic_data(spec, dict.fromkeys(SETS, str(tmp_path / "lib")),
                                   {"vsi_bench": str(tmp_path / "lib/bench")})
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]  # noqa: E731
    assert strip(read_jsonl(out / "data/warmup.jsonl")) == expected.warmup
    assert strip(read_jsonl(out / "data/train_video.jsonl")) == expected.train_video
    assert read_json(out / "data/bench/vsi_bench.json") == expected.benchmarks["vsi_bench"]


def test_the_fault_hook_fails_the_named_script_once(tmp_path):
    marker = tmp_path / "failed-once"
    env = fail_once_env(tmp_path / "hook", "data_synthetic", marker)
    script = [sys.executable, str(ROOT / "scripts" / "data_synthetic.py"), "--help"]
    first = subprocess.run(script, env=env, capture_output=True, text=True)
    assert first.returncode == 3 and marker.exists() and "failing once on purpose" in first.stderr
    assert subprocess.run(script, env=env, capture_output=True, text=True).returncode == 0
    other = subprocess.run([sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True)
    assert other.stdout == "ran\n"
