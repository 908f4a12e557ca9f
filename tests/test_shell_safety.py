"""No config value and no part of the checkout's path is ever read by a shell: every path reaches its
script as one literal argument, whatever spaces, quotes, `;` or `$(...)` it holds."""
import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_eval_workflow import eval_config

# A folder name that a shell would split, unbalance and run `touch PWNED` from, were it ever unquoted.
HOSTILE = "d a't$(touch PWNED);x"
CHECKOUT_PARTS = ["veripo", "scripts", "rules", "schemas", "configs", "envs", "profiles", "Snakefile", "config.yaml"]
BENCHES = ["vsi_bench", "video_mme", "lvbench", "tomato", "mmvu", "video_mmmu"]


def copy_checkout(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in CHECKOUT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def snakemake(checkout: Path, workdir: Path, cfg: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    workdir.mkdir(exist_ok=True)
    cfg_path = workdir / "test_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args, "--configfile", str(cfg_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, VERIPO_THREADS="1"))


def printed_commands(text: str) -> list[list[str]]:
    """The argv of every shell command a `-p` run printed, as a POSIX shell would split it, without the
    job's memory the vLLM rules set before it (VERIPO_MEM_MB=<the rule's mem_mb>, an integer)."""
    commands = [shlex.split(line.removeprefix("Shell command: ")) for line in text.splitlines()
                if line.startswith("Shell command: ")]
    for argv in commands:
        if argv and argv[0].startswith("VERIPO_MEM_MB="):
            assert argv.pop(0).removeprefix("VERIPO_MEM_MB=").isdigit()
    return commands


def pwned_files(tmp: Path) -> list[Path]:
    """PWNED wherever a shell could have run `touch PWNED`: the test's folders, the repository, the cwd."""
    return [*tmp.rglob("PWNED"), *(p for p in (ROOT / "PWNED", Path.cwd() / "PWNED") if p.exists())]


def hostile_config(default: dict) -> dict:
    """Every path-like key under a HOSTILE folder; fresh verifier sampling puts verifier_sample in the DAG."""
    cfg = copy.deepcopy(default)
    cfg["base_model"] = f"{HOSTILE}/base model"
    cfg["data"]["train_video"] = f"{HOSTILE}/train video.jsonl"
    cfg["data"]["train_activation"] = f"{HOSTILE}/train activation.jsonl"
    cfg["train"]["zero_config"] = f"{HOSTILE}/zero2.json"
    cfg["verifier"]["rollouts"]["source"] = "fresh"
    for name, bench in cfg["eval"]["benchmarks"].items():
        bench.update(questions=f"{HOSTILE}/{name} q.json", video_root=f"{HOSTILE}/videos of {name}")
    return cfg


def assert_scripts_run_from(commands: list[list[str]], checkout: Path, names: set[str]) -> None:
    """Each command is this interpreter on a script of the (hostile) checkout, and ``names`` all run."""
    scripts = str(checkout / "scripts") + os.sep
    assert all(argv[0] == sys.executable and argv[1].startswith(scripts) for argv in commands)
    assert {Path(argv[1]).name for argv in commands} >= names


def assert_pairs(commands: list[list[str]], expected: set[tuple[str, str]]) -> None:
    """Each (flag, value) is a flag followed by exactly that value as its own argv element in some command."""
    seen = {(argv[i], argv[i + 1]) for argv in commands for i in range(len(argv) - 1)}
    assert expected <= seen, sorted(expected - seen)


def assert_no_stray_fragment(commands: list[list[str]], values: set[str], checkout: Path) -> None:
    """Anything carrying the hostile text is a whole configured value, a checkout path or a JSON argument:
    never a piece of one split at a space, a quote or a `;`."""
    for argv in commands:
        for arg in argv:
            if "PWNED" not in arg or arg in values or arg.startswith(str(checkout) + os.sep):
                continue
            assert isinstance(json.loads(arg), dict), arg


def test_dry_run_passes_every_hostile_path_as_one_argument(tmp_path, default_config):
    checkout = copy_checkout(tmp_path / f"check out {HOSTILE}")
    work = tmp_path / "work"
    cfg = hostile_config(default_config)
    for bench in cfg["eval"]["benchmarks"].values():  # the evaluation jobs' inputs: the DAG needs them to exist
        questions = work / bench["questions"]
        questions.parent.mkdir(parents=True, exist_ok=True)
        questions.write_text("[]")
    targets = ["iter2/eval/vsi_bench.json", *(f"base/eval/{name}.json" for name in BENCHES)]
    out = snakemake(checkout, work, cfg, "-n", "-p", *targets)
    assert out.returncode == 0, out.stderr[-3000:]
    commands = printed_commands(out.stdout + out.stderr)
    scripts = checkout / "scripts"
    assert_scripts_run_from(commands, checkout, {"data_synthetic.py", "launch.py", "curriculum_filter.py",
                                                 "verifier_sample.py", "verifier_judge.py", "dpo_build_pairs.py",
                                                 "eval_generate.py", "eval_score.py"})
    d, benches = cfg["data"], cfg["eval"]["benchmarks"]
    expected = {("--model", cfg["base_model"]), ("--data", d["train_activation"]), ("--data", d["train_video"]),
                ("--train-video", d["train_video"]), ("--train-activation", d["train_activation"]),
                ("--", str(scripts / "grpo_train.py")), ("--", str(scripts / "dpo_train.py"))}
    for bench in benches.values():
        expected |= {("--questions", bench["questions"]), ("--video-root", bench["video_root"])}
    assert_pairs(commands, expected)
    assert_no_stray_fragment(commands, {v for _, v in expected}, checkout)
    configs = [json.loads(argv[argv.index("--config") + 1]) for argv in commands if "--config" in argv]
    assert any(c.get("train", {}).get("zero_config") == cfg["train"]["zero_config"] for c in configs)

    # The tiny base's own rules, from the same checkout.
    tiny = copy.deepcopy(cfg)
    tiny["base_model"] = "tiny"
    out = snakemake(checkout, tmp_path / "work_tiny", tiny, "-n", "-p", "base/model")
    assert out.returncode == 0, out.stderr[-3000:]
    commands = printed_commands(out.stdout + out.stderr)
    assert_scripts_run_from(commands, checkout, {"data_synthetic.py", "base_build_tiny.py", "base_warmup.py"})
    assert_no_stray_fragment(commands, {d["train_video"], d["train_activation"]}, checkout)
    assert not pwned_files(tmp_path)


def test_dpo_skip_pairs_still_logs_its_message(tmp_path, default_config):
    checkout = copy_checkout(tmp_path / f"check out {HOSTILE}")
    work = tmp_path / "work"
    (work / "iter1/dpo").mkdir(parents=True)
    (work / "iter1/dpo/pair_stats.json").write_text(json.dumps({"pairs": 0}))
    out = snakemake(checkout, work, default_config, "iter1/dpo/pairs_skipped.jsonl",
                    "--allowed-rules", "dpo_skip_pairs")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "iter1/dpo/pairs_skipped.jsonl").read_text() == ""
    message = (work / "logs/dpo_skip_pairs/iter1.log").read_text()
    assert "iteration 1" in message and message.endswith("\n") and message.count("\n") == 1
    assert not pwned_files(tmp_path)


@pytest.mark.slow
def test_evaluation_runs_from_a_spaced_checkout_on_hostile_paths(tmp_path, default_config, tiny_dir):
    """The real chain data_synthetic -> eval_generate -> eval_score, run from a checkout whose path has a
    space, on training files, a base model, questions and videos under HOSTILE folders."""
    checkout = copy_checkout(tmp_path / "check out")
    work = tmp_path / "work"
    cfg = eval_config(default_config)
    base = work / HOSTILE / "base model"
    shutil.copytree(tiny_dir, base)
    cfg["base_model"] = str(base)
    cfg["data"]["train_video"] = f"{HOSTILE}/train video.jsonl"
    cfg["data"]["train_activation"] = f"{HOSTILE}/train activation.jsonl"
    cfg["eval"]["benchmarks"] = {"vsi_bench": {"questions": "data/bench/vsi_bench.json", "video_root": "data/bench"}}
    out = snakemake(checkout, work, cfg, cfg["data"]["train_video"])
    assert out.returncode == 0, out.stderr[-5000:]
    assert (work / cfg["data"]["train_activation"]).stat().st_size > 0

    # The benchmark as a user would keep it: question file and videos under a hostile folder.
    bench_dir = f"{HOSTILE}/bench data"
    shutil.copytree(work / "data/bench", work / bench_dir)
    questions = f"{bench_dir}/vsi bench's questions.json"
    os.replace(work / bench_dir / "vsi_bench.json", work / questions)
    cfg["eval"]["benchmarks"] = {"vsi_bench": {"questions": questions, "video_root": bench_dir}}
    out = snakemake(checkout, work, cfg, "base/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-5000:]
    score = json.loads((work / "base/eval/vsi_bench.json").read_text())
    assert score["n"] == cfg["data"]["synthetic"]["n_benchmark"] and score["skipped"] == 0
    prov = score["provenance"]
    assert prov["questions"] == questions and prov["video_root"] == bench_dir and prov["checkpoint"] == str(base)
    assert not pwned_files(tmp_path)
