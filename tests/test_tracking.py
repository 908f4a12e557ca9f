"""Live tracking (veripo/train/tracking.py): the TensorBoard event files of the chain's training jobs hold
what their metrics.jsonl files hold (every numeric field, under its name, at the row's index as the step),
written by rank 0 alone; a resumed job's steps stay monotone; W&B enabled without its package stops the
job with one line naming the key; editing the tracking section reruns nothing."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import FINISHED_RUN_TARGETS, ROOT, jsonl

# each training job's metrics file and its TensorBoard folder (logs/tensorboard/<rule>/<job>)
JOBS = [("base/warmup_metrics.jsonl", "base_warmup/base_warmup")]
JOBS += [(f"iter{k}/grpo/metrics.jsonl", f"grpo_train/iter{k}") for k in range(3)]
JOBS += [(f"iter{k}/dpo/metrics.jsonl", f"dpo_train/iter{k}") for k in (1, 2)]

OFF = {"tensorboard": False, "wandb": {"enabled": False, "project": "veripo", "mode": "offline"}}


def events(folder) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as TensorBoard shows the folder (every scalar kept, purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def same(stored: float, value: float) -> bool:
    """TensorBoard keeps a scalar as float32."""
    return (math.isnan(stored) and math.isnan(value)) or stored == float(np.float32(value))


def test_tensorboard_holds_what_each_metrics_file_holds(finished_run):
    for metrics, job in JOBS:
        rows = jsonl(finished_run / metrics)
        folder = finished_run / "logs" / "tensorboard" / job
        assert rows, f"{metrics} is empty: nothing to compare ({job})"
        # one writer: rank 0's (a file per writing process, named with its pid)
        files = sorted(p.name for p in folder.glob("events.out.tfevents.*"))
        assert len(files) == 1, f"{job}: {files}"
        tags = {k for row in rows for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        found = events(folder)
        assert set(found) == tags, f"{job}: tags {sorted(found)} but {metrics} has {sorted(tags)}"
        for tag in tags:
            want = [(i, row[tag]) for i, row in enumerate(rows) if tag in row]
            got = found[tag]
            assert [s for s, _ in got] == [s for s, _ in want], f"{job}, {tag}: steps differ"
            bad = [(s, v, w) for (s, v), (_, w) in zip(got, want) if not same(v, w)]
            assert not bad, f"{job}, {tag}: (step, tensorboard, metrics.jsonl) {bad[:3]}"


def test_only_rank_0_writes_and_a_resume_replaces_the_steps_after_its_checkpoint(tmp_path):
    from veripo.train.tracking import Tracker, TrackingConfig, record

    cfg = TrackingConfig.from_config({**OFF, "tensorboard": True})
    with Tracker(cfg, "grpo_train/iter1", rank=1, root=str(tmp_path)) as other:
        other.log({"loss": 1.0}, 0)
    assert not (tmp_path / "tensorboard").exists()

    folder = tmp_path / "tensorboard" / "grpo_train" / "iter1"
    folder.mkdir(parents=True)
    (folder / "events.out.tfevents.0.earlier-attempt").write_bytes(b"")  # an attempt started over from step 0
    rows: list[dict] = []
    with Tracker(cfg, "grpo_train/iter1", rank=0, root=str(tmp_path)) as first:
        for step in range(5):
            record(rows, {"stage": "video", "loss": float(step), "reward/accuracy": 0.5}, first)
    assert not (folder / "events.out.tfevents.0.earlier-attempt").exists()
    assert events(folder)["loss"] == [(s, float(s)) for s in range(5)]
    # killed after step 4; the checkpoint holds 3 rows: the resumed attempt goes on at step 3
    rows = rows[:3]
    with Tracker(cfg, "grpo_train/iter1", rank=0, root=str(tmp_path)) as resumed:
        for step in range(3, 6):
            record(rows, {"stage": "video", "loss": 10.0 * step, "reward/accuracy": 0.5}, resumed)
    shown = events(folder)
    assert shown["loss"] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]
    assert [s for s, _ in shown["reward/accuracy"]] == list(range(6))
    assert set(shown) == {"loss", "reward/accuracy"}  # the text field is no scalar


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None,
                    reason="wandb is installed here: the missing-package error cannot show")
def test_wandb_enabled_without_the_package_stops_the_job_with_one_line(tmp_path, default_config):
    c = default_config
    job = {"dtype": c["dtype"], "attn_implementation": c["attn_implementation"], "prompts": c["prompts"],
           "media": c["media"], "train": c["train"], "max_question_chars": c["data"]["max_question_chars"],
           "warmup": c["warmup"]}  # what rule base_warmup passes (rules/common.smk policy_args)
    tracking = json.dumps({**OFF, "wandb": {"enabled": True, "project": "veripo", "mode": "offline"}})
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "base_warmup.py"), "--model", "unused",
                          "--data", "unused", "--config", json.dumps(job), "--out", str(tmp_path / "m"),
                          "--metrics", str(tmp_path / "m.jsonl"), "--tracking", tracking,
                          "--tracking-name", "base_warmup/base_warmup"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config key 'tracking.wandb.enabled'"), out.stderr
    assert "pip install wandb" in lines[0]
    assert not (tmp_path / "logs").exists()


def test_editing_the_tracking_section_reruns_nothing(finished_run, tmp_path):
    """Tracking changes no result: the finished chain, planned again with every tracking key edited, has
    nothing to do (the section reaches the jobs outside Snakemake's params rerun trigger)."""
    cfg = yaml.safe_load((finished_run / "test_config.yaml").read_text())
    cfg["tracking"] = {"tensorboard": False, "wandb": {"enabled": True, "project": "elsewhere", "mode": "online"}}
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                          str(finished_run), "--cores", "2", "-n", *FINISHED_RUN_TARGETS, "--configfile", str(edited)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing to be done" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
