"""What makes Snakemake plan a finished run's jobs again: what they compute, never where the run, the
checkout or the interpreter lie, whether --sdm conda is on, or a run setting (veripo/run_settings.py).

Each test copies the session's finished run (tests/conftest.py) and dry-runs it: no job runs."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FINISHED_RUN_TARGETS, ROOT, job_counts, snakemake

# What a checkout holds that a run reads (the Snakefile's folder), without the venvs and data.
WORKFLOW = ["Snakefile", "rules", "scripts", "veripo", "schemas", "config.yaml", "configs", "envs", "profiles",
            "report"]


def copied_run(finished_run: Path, where: Path) -> tuple[Path, dict]:
    """A copy of the finished run at ``where``, and its config."""
    shutil.copytree(finished_run, where, symlinks=True)
    return where, yaml.safe_load((where / "test_config.yaml").read_text())


def dry_run(workdir: Path, cfg: dict, *args, env=None) -> str:
    out = snakemake(workdir, cfg, "-n", *FINISHED_RUN_TARGETS, *args, timeout=300, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout + out.stderr


def planned(text: str) -> dict:
    """{rule: jobs} a dry run planned; {} for "Nothing to be done"."""
    return {} if "Nothing to be done" in text else job_counts(text)


def moved_interpreter(where: Path) -> Path:
    """This Python under another path, as a venv that moved would be: sys.executable differs, the
    packages are the same."""
    (where / "bin").mkdir(parents=True)
    python = where / "bin" / "python"
    os.symlink(os.path.realpath(sys.executable), python)
    if sys.prefix != sys.base_prefix:  # a venv: its pyvenv.cfg beside bin/ makes the copy one too
        shutil.copy2(Path(sys.prefix) / "pyvenv.cfg", where / "pyvenv.cfg")
        os.symlink(Path(sys.prefix) / "lib", where / "lib")
    return python


def test_a_moved_run_checkout_and_venv_plan_nothing(finished_run, tmp_path):
    """The run directory, the checkout and the venv all elsewhere (as when a checkout that holds its
    run is copied): the absolute paths of scripts and interpreter are no params."""
    checkout = tmp_path / "checkout"
    for name in WORKFLOW:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, checkout / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            checkout.mkdir(exist_ok=True)
            shutil.copy2(src, checkout / name)
    python = moved_interpreter(tmp_path / "venv")
    workdir, _ = copied_run(finished_run, tmp_path / "moved run")  # a space: paths are quoted
    cmd = [str(python), "-m", "snakemake", "-s", str(checkout / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "-n", *FINISHED_RUN_TARGETS, "--configfile", str(workdir / "test_config.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert f"Snakefile: {checkout / 'Snakefile'}" in text  # the copy's workflow ran, not this checkout's
    assert planned(text) == {}, text[-3000:]


FAKE_CONDA = """#!/bin/sh
# conda as far as a dry run asks it (this machine has none): the info, version and channel check
case "$*" in
  "info --json") echo '{"conda_prefix": "%s", "platform": "linux-64"}' ;;
  "--version") echo "conda 24.7.1" ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo "fake conda: $*" >&2; exit 1 ;;
esac
"""


def test_switching_on_sdm_conda_plans_nothing(finished_run, tmp_path):
    """Under --sdm conda the interpreter is the env's `python` and the software-env trigger would see
    an env where there was none: neither replans a run made in the venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(FAKE_CONDA % (tmp_path / "conda"))
    (bin_dir / "conda").chmod(0o755)
    workdir, cfg = copied_run(finished_run, tmp_path / "run")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    text = dry_run(workdir, cfg, "--sdm", "conda", env=env)
    assert "Conda environment" in text  # conda deployment was on
    assert planned(text) == {}, text[-3000:]


# A new value for each run setting (veripo/run_settings.py); eval.media holds the evaluation jobs' media.
RUN_SETTING_EDITS = {
    "train.master_port": 29711,
    "train.logprob_chunk": 7,
    "grpo.checkpoint_every": 1,
    "dpo.checkpoint_every": 1,
    "media.frame_cache": "frames",
    "media.frame_cache_max_bytes": 10_000_000,
    "eval.media.frame_cache": "frames",
    "eval.media.frame_cache_max_bytes": 10_000_000,
    "verifier.judge.timeout_s": 5,
    "verifier.judge.retries": 0,
    "verifier.judge.backoff_s": 0.5,
}


def edited(cfg: dict, key: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    assert node[last] != value, key
    node[last] = value
    return cfg


def test_every_run_setting_is_edited_here():
    from veripo import run_settings

    listed = {*run_settings.ALWAYS, run_settings.LOGPROB_CHUNK, *run_settings.HTTP_JUDGE}
    assert listed <= set(RUN_SETTING_EDITS)


@pytest.mark.parametrize("key", RUN_SETTING_EDITS)
def test_editing_a_run_setting_plans_nothing(finished_run, tmp_path, key):
    workdir, cfg = copied_run(finished_run, tmp_path / "run")
    assert cfg["verifier"]["judge"]["backend"] == "rule" and cfg["train"]["zero_config"] != "auto"
    text = dry_run(workdir, edited(cfg, key, RUN_SETTING_EDITS[key]))
    assert planned(text) == {}, text[-3000:]


def test_editing_a_result_setting_replans_what_it_shapes(finished_run, tmp_path):
    """Iteration 2's GRPO learning rate: its GRPO job and everything downstream of it, nothing before."""
    workdir, cfg = copied_run(finished_run, tmp_path / "run")
    cfg = copy.deepcopy(cfg)
    cfg["grpo"]["per_iteration"][1]["lr"] *= 2
    jobs = planned(dry_run(workdir, cfg))
    assert jobs.get("grpo_train") == 1, jobs
    assert {"verifier_judge", "dpo_build_pairs", "dpo_train", "eval_generate", "eval_score",
            "report_figures"} <= set(jobs), jobs
    assert not {"data_synthetic", "base_build_tiny", "base_warmup", "curriculum_filter"} & set(jobs), jobs
    # iteration 2's GRPO checkpoint and its DPO model are scored; base, iter0 and iter1 are not
    assert jobs["eval_generate"] == 2, jobs


def test_logprob_chunk_shapes_the_result_where_it_picks_the_zero_stage(default_config):
    """With zero_config auto the chunk feeds the memory plan that picks ZeRO-2 or ZeRO-3: a param then."""
    from veripo import run_settings

    job = {"train": dict(default_config["train"], engine="deepspeed", zero_config="auto")}
    result, run = run_settings.split(job)
    assert result["train"]["logprob_chunk"] == default_config["train"]["logprob_chunk"]
    assert run == {"train": {"master_port": default_config["train"]["master_port"]}}
    result, run = run_settings.split({"train": dict(job["train"], engine="torch")})
    assert "logprob_chunk" in run["train"] and "logprob_chunk" not in result["train"]


def test_an_http_judges_connection_settings_shape_its_verdicts():
    from veripo import run_settings

    judge = {"backend": "http", "timeout_s": 60, "retries": 3, "backoff_s": 1.0}
    assert not run_settings.not_in_result({"verifier": {"judge": judge}}) & set(run_settings.HTTP_JUDGE)
    judge["backend"] = "hf"
    assert run_settings.not_in_result({"verifier": {"judge": judge}}) == set(run_settings.HTTP_JUDGE)


def test_the_resume_fingerprint_leaves_out_the_same_settings(default_config):
    """One list for Snakemake's params and a resumed job's fingerprint: what one ignores, the other does."""
    from veripo import run_settings
    from veripo.train.checkpoints import run_fingerprint

    job = {"train": default_config["train"], "media": default_config["media"], "grpo": default_config["grpo"],
           "dpo": default_config["dpo"]}
    base = run_fingerprint({}, job)["settings"]
    assert not run_settings.not_in_result(job) & set(base)
    result, run = run_settings.split(job)
    assert run_settings.merged(result, run) == job
    for key in run_settings.not_in_result(job):
        assert run_fingerprint({}, edited(job, key, RUN_SETTING_EDITS[key]))["settings"] == base, key
    assert run_fingerprint({}, edited(job, "dpo.lr", 1.0))["settings"] != base
