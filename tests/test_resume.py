"""Partial reruns after failures: a SIGKILLed training job resumes from its newest complete step
checkpoint, ends with the same model as an uninterrupted run, and finished upstream jobs are not rerun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_workflow import small_config, snakemake

pytestmark = pytest.mark.slow


def grpo_cmd(model, data, out, cfg):
    return [sys.executable, str(ROOT / "scripts" / "grpo_train.py"), "--model", model, "--data", data,
            "--config", json.dumps(cfg), "--iteration", "1", "--stage", "video", "--out-model", str(out / "model"),
            "--out-rollouts", str(out / "rollouts.jsonl"), "--out-metrics", str(out / "metrics.jsonl"),
            "--checkpoint-dir", str(out / "ckpt")]


def wait_for(pred, timeout, what, proc):
    t = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.time() - t > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_group(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def state_dict(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_killed_grpo_resumes_to_the_uninterrupted_model(tmp_path, tiny_dir, default_config):
    from veripo import jsonio
    from veripo.data import synthetic
    from veripo.config import grpo_stage

    recs = synthetic.make_video_set(tmp_path, 8, seed=3, tasks=["color", "count"], size=64, fps=8, seconds=1.0)
    data = str(tmp_path / "q.jsonl")
    jsonio.write_jsonl(data, recs)
    g = dict(grpo_stage(default_config, 1), rollout_batch=2, global_batch=8, epochs=3, checkpoint_every=2,
             rollouts_per_query=4, max_new_tokens=16)
    cfg = {"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
           "media": default_config["media"], "train": default_config["train"], "grpo": g}
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(grpo_cmd(tiny_dir, data, full, cfg), check=True, capture_output=True)

    log = open(tmp_path / "cut.log", "w")
    proc = subprocess.Popen(grpo_cmd(tiny_dir, data, cut, cfg), stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: list((cut / "ckpt").glob("step-000004/COMPLETE")), 120, "a step checkpoint", proc)
    kill_group(proc)
    assert not (cut / "model").exists() and not (cut / "rollouts.jsonl").exists()  # no partial outputs
    rerun = subprocess.run(grpo_cmd(tiny_dir, data, cut, cfg), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed_at = int(rerun.stderr.split("resuming from step checkpoint at round ")[1].split()[0])
    assert 4 <= resumed_at < 12

    a, b = state_dict(full / "model"), state_dict(cut / "model")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst  # measured: 0.0 (same seed, RNG and optimiser state restored)
    rows = [json.loads(x) for x in (cut / "rollouts.jsonl").read_text().splitlines()]
    keys = [(r["round"], r["rollout_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12 * 2 * 4  # every round once, nothing lost or duplicated
    assert not (cut / "ckpt").exists()  # cleared once the job finished
    settings = json.loads((cut / "settings.json").read_text())
    assert settings["config"]["grpo"] == g and settings["world_size"] == 1
    assert settings["inputs"] == {"model": tiny_dir, "data": data} and settings["iteration"] == 1


def test_killed_workflow_reruns_only_the_unfinished_job(tmp_path, default_config):
    cfg = small_config(default_config, iterations=1)
    cfg["grpo"]["per_iteration"][0].update(rollout_batch=2, epochs=4)
    cfg["grpo"]["checkpoint_every"] = 2
    cfg_path = tmp_path / "test_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "2", "iter1/eval/vsi_bench.json", "--configfile", str(cfg_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: list(tmp_path.glob("checkpoints/iter1/grpo/step-*/COMPLETE")), 600, "iter1 step checkpoint", proc)
    finally:
        kill_group(proc)
    assert not (tmp_path / "iter1/grpo/model").exists()
    finished = {p: p.stat().st_mtime_ns for p in [tmp_path / "base/model/model.safetensors",
                                                  tmp_path / "iter0/grpo/model/model.safetensors",
                                                  tmp_path / "iter0/grpo/rollouts.jsonl"]}
    assert snakemake(tmp_path, cfg, "--unlock").returncode == 0
    out = snakemake(tmp_path, cfg, "iter1/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
    ran = out.stdout + out.stderr
    assert "rule grpo_train:" in ran and "rule base_warmup:" not in ran and "rule data_synthetic:" not in ran
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert "resuming from step checkpoint at round" in (tmp_path / "logs/grpo_train/iter1.log").read_text()
    assert (tmp_path / "iter1/eval/vsi_bench.json").exists()


# Step checkpoints that cannot mix runs: a fingerprint of the inputs and settings, a manifest of
# digests, tensors-only loading.

def one_rank():
    from veripo.train import distributed

    return distributed.Dist(0, 1, 0)


def dpo_settings(**changes):
    from dataclasses import asdict

    from veripo.train import dpo

    cfg = dpo.DPOConfig(beta=0.1, lr=1e-3, global_batch=1, epochs=3, nll_coef=0.0, grad_clip=1.0,
                        freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=2, heldout_fraction=0.0,
                        min_pairs=1, on_too_few_pairs="stop")
    return {"dpo": dict(asdict(cfg), **changes), "world_size": 1}


def saved_checkpointer(tmp_path, tiny_policy, inputs, settings, rounds=(2,), journal=None):
    """A checkpointer that has saved the tiny model's state at each of ``rounds``."""
    import torch

    from veripo.train.engine import TrainEngine
    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint

    ckpt = StepCheckpointer(tmp_path / "ckpt", run_fingerprint(inputs, settings), journal=journal)
    engine = TrainEngine(tiny_policy[0], 1e-3, 0.0, 1.0, "torch")
    for r in rounds:
        ckpt.save(engine, torch.Generator().manual_seed(r), {"round": r, "metrics": []}, one_rank())
    return ckpt


def reopened(tmp_path, inputs, settings, journal=None):
    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint

    return StepCheckpointer(tmp_path / "ckpt", run_fingerprint(inputs, settings), journal=journal)


def test_resume_with_changed_data_is_refused_naming_the_file(tmp_path, tiny_dir, tiny_policy):
    from veripo.errors import InputError

    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "answer": "A"}\n')
    inputs = {"--model": tiny_dir, "--data": str(data)}
    saved_checkpointer(tmp_path, tiny_policy, inputs, dpo_settings())
    os.utime(data, ns=(1, 1))  # touched, same bytes: the same data
    assert reopened(tmp_path, inputs, dpo_settings()).latest_round(one_rank()) == 2

    data.write_text('{"id": "a", "answer": "B"}\n')  # same size, other answer
    with pytest.raises(InputError) as err:
        reopened(tmp_path, inputs, dpo_settings()).latest_round(one_rank())
    msg = str(err.value)
    assert f"input --data {data}" in msg and "--model" not in msg and "settings" not in msg
    assert f"delete {tmp_path / 'ckpt'} to start over" in msg and "\n" not in msg
    assert (tmp_path / "ckpt/step-000002/COMPLETE").exists()  # a refusal touches nothing


def test_resume_with_changed_dpo_lr_is_refused_naming_lr(tmp_path, tiny_dir, tiny_policy):
    from veripo.errors import InputError

    inputs = {"--model": tiny_dir}
    saved_checkpointer(tmp_path, tiny_policy, inputs, dpo_settings())
    with pytest.raises(InputError, match=r"\(settings dpo.lr changed\)"):
        reopened(tmp_path, inputs, dpo_settings(lr=2e-3)).latest_round(one_rank())
    with pytest.raises(InputError, match=r"\(settings dpo.beta, dpo.global_batch changed\)"):
        reopened(tmp_path, inputs, dpo_settings(beta=0.2, global_batch=2)).latest_round(one_rank())
    # how often state is saved does not change the trajectory
    assert reopened(tmp_path, inputs, dpo_settings(checkpoint_every=3)).latest_round(one_rank()) == 2


def dpo_job(tiny_dir, media, templates, pairs, root, inputs):
    """train_dpo as the script runs it, with step checkpoints at steps 2 and 4 of 6."""
    from veripo.train import dpo
    from veripo.model import policy
    from veripo.stage_config import PromptSetup, RunContext
    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint

    model, processor = policy.load_policy(tiny_dir)
    policy.configure_processor(processor, media)
    settings = dpo_settings()
    cfg = dpo.DPOConfig(**settings["dpo"])
    ckpt = StepCheckpointer(root, run_fingerprint(inputs, settings))
    engine, metrics, _ = dpo.train_dpo(model, processor, pairs, cfg, PromptSetup(templates, media),
                                       RunContext(stage="dpo"), checkpointer=ckpt)
    return engine.module.state_dict(), metrics


def some_pairs(processor, video_set):
    from veripo.model import policy

    pairs = []
    for i, rec in enumerate(video_set[:2]):
        rec = {k: v for k, v in rec.items() if not k.startswith("_")}
        p = {"pair_id": f"p{i}", "query_id": rec["id"], "query": rec,
             "chosen": f"<think>It is {rec['answer_text']}.</think><answer>${rec['answer']}$</answer>",
             "rejected": "<think>It is.</think><answer>$Z$</answer>"}
        p["chosen_ids"], p["rejected_ids"] = (policy.encode_completion(processor, p[s]).tolist()
                                              for s in ("chosen", "rejected"))
        pairs.append(p)
    return pairs


@pytest.mark.parametrize("name", ["engine.pt", "rng-rank0.pt", "loop.json"])
def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_dir, tiny_policy, video_set,
                                                                    media, templates, caplog, name):
    pairs = some_pairs(tiny_policy[1], video_set)
    root, inputs = tmp_path / "ckpt", {"--model": tiny_dir}
    full, full_metrics = dpo_job(tiny_dir, media, templates, pairs, root, inputs)  # leaves steps 2 and 4
    broken = root / "step-000004" / name
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])

    resumed, metrics = dpo_job(tiny_dir, media, templates, pairs, root, inputs)
    assert f"{broken} does not match the sha256 recorded when it was saved" in caplog.text
    assert f"resuming from the previous step checkpoint, {root / 'step-000002'}" in caplog.text
    assert (root / "broken-step-000004" / name).exists()  # set aside, not resumed from again
    assert [m["step"] for m in metrics] == list(range(6)) and metrics[:2] == full_metrics[:2]
    assert max(float((full[k] - resumed[k]).abs().max()) for k in full) == 0.0


class Planted:
    """Unpickling this creates ``marker``: what a planted checkpoint file could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path, marker):
    import torch

    torch.save({"generator": Planted(marker), "torch_rng": Planted(marker)}, path)


def test_planted_pickle_in_a_checkpoint_is_not_run(tmp_path, tiny_dir, tiny_policy, caplog):
    import hashlib
    import json as json_

    import torch

    from veripo.train.engine import TrainEngine
    from veripo.errors import InputError

    inputs, marker = {"--model": tiny_dir}, tmp_path / "ran"
    saved_checkpointer(tmp_path, tiny_policy, inputs, dpo_settings(), rounds=(2, 4))
    engine = TrainEngine(tiny_policy[0], 1e-3, 0.0, 1.0, "torch")

    # planted after the save: the digest no longer matches, so it is never opened
    plant(tmp_path / "ckpt/step-000004/rng-rank0.pt", marker)
    state = reopened(tmp_path, inputs, dpo_settings()).restore(engine, torch.Generator(), {"round": 0}, one_rank())
    assert state["round"] == 2 and not marker.exists()
    assert "step-000004/rng-rank0.pt does not match the sha256" in caplog.text

    # planted with a matching digest: loading is tensors-only, so it is refused, and not run
    step = tmp_path / "ckpt/step-000002"
    plant(step / "rng-rank0.pt", marker)
    manifest = json_.loads((step / "manifest.json").read_text())
    manifest["files"]["rng-rank0.pt"] = hashlib.sha256((step / "rng-rank0.pt").read_bytes()).hexdigest()
    (step / "manifest.json").write_text(json_.dumps(manifest))
    with pytest.raises(InputError, match="refused to load: holds more than tensors") as err:
        reopened(tmp_path, inputs, dpo_settings()).restore(engine, torch.Generator(), {"round": 0}, one_rank())
    assert str(err.value).startswith(f"{step / 'rng-rank0.pt'}: ") and not marker.exists()


def test_rollout_log_is_cut_back_to_the_checkpoint_or_emptied_when_it_changed(tmp_path, tiny_dir, tiny_policy,
                                                                              caplog):
    inputs, log = {"--model": tiny_dir}, tmp_path / "ckpt" / "rollouts.partial.jsonl"
    log.parent.mkdir()
    log.write_text('{"round": 0}\n{"round": 1}\n')
    saved_checkpointer(tmp_path, tiny_policy, inputs, dpo_settings(), rounds=(2,), journal=log)
    with open(log, "a") as fh:
        fh.write('{"round": 2}\n{"round": 3, "cut')  # logged after the checkpoint, then killed mid-line
    assert reopened(tmp_path, inputs, dpo_settings(), journal=log).latest_round(one_rank()) == 2
    assert log.read_text() == '{"round": 0}\n{"round": 1}\n'

    log.write_text('{"round": 0, "other": "run"}\n{"round": 1}\n')  # not what the checkpoint saw
    assert reopened(tmp_path, inputs, dpo_settings(), journal=log).latest_round(one_rank()) == 0
    assert f"{log} no longer starts with the rollouts logged up to this checkpoint" in caplog.text
    assert "starting over" in caplog.text and log.read_text() == ""


def test_killed_dpo_rerun_with_another_lr_is_refused(tmp_path, tiny_dir, tiny_policy, video_set, default_config):
    from veripo import jsonio

    pairs = tmp_path / "pairs.jsonl"
    jsonio.write_jsonl(pairs, some_pairs(tiny_policy[1], video_set))
    dpo_cfg = dict(default_config["dpo"], global_batch=1, epochs=200, checkpoint_every=1, heldout_fraction=0.0)
    cfg = {"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
           "media": default_config["media"], "train": dict(default_config["train"], engine="torch"), "dpo": dpo_cfg}

    def cmd(cfg):
        return [sys.executable, str(ROOT / "scripts" / "dpo_train.py"), "--model", tiny_dir, "--pairs", str(pairs),
                "--config", json.dumps(cfg), "--out-model", str(tmp_path / "model"), "--out-metrics",
                str(tmp_path / "metrics.jsonl"), "--out-heldout", str(tmp_path / "heldout.json"),
                "--checkpoint-dir", str(tmp_path / "ckpt")]

    proc = subprocess.Popen(cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: list((tmp_path / "ckpt").glob("step-*/COMPLETE")), 300, "a step checkpoint", proc)
    finally:
        kill_group(proc)
    rerun = subprocess.run(cmd(dict(cfg, dpo=dict(dpo_cfg, lr=dpo_cfg["lr"] * 2))), capture_output=True, text=True)
    assert rerun.returncode == 2, rerun.stderr[-3000:]
    last = rerun.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'ckpt'}/step-") and "(settings dpo.lr changed)" in last, last
    assert f"delete {tmp_path / 'ckpt'} to start over" in last and "Traceback" not in rerun.stderr
    assert not (tmp_path / "model").exists()


# What a resume fingerprints besides the data file: the media it names, hashed through a cache.

class Killed(Exception):
    """What a SIGKILL is to the job, without a subprocess: it stops before saving its model."""


def killed_at_the_end(monkeypatch, module):
    def save(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(module, "save_checkpoint", save)


def own_videos(tmp_path, n=2):
    """Query records (paths resolved) on ``n`` synthetic videos this test may replace."""
    from veripo import jsonio
    from veripo.data import queries, synthetic

    folder = tmp_path / "videos"
    jsonio.write_jsonl(folder / "q.jsonl", synthetic.make_video_set(folder, n, seed=5, tasks=["color"], size=32,
                                                                    fps=4, seconds=0.5))
    return str(folder / "q.jsonl"), queries.load_queries(str(folder / "q.jsonl"))


def replace_video(records):
    """Overwrite the first record's video with another record's (a valid video, other bytes)."""
    target, other = Path(records[0]["video"]), Path(records[1]["video"])
    assert target.read_bytes() != other.read_bytes()
    target.write_bytes(other.read_bytes())
    return target


def test_replaced_video_refuses_the_grpo_resume_naming_it(tmp_path, tiny_dir, default_config, monkeypatch, caplog):
    import logging

    from veripo.config import grpo_stage
    from veripo.errors import InputError
    from veripo.stage_config import GRPOJob
    from veripo.train import grpo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data, records = own_videos(tmp_path)
    g = dict(grpo_stage(default_config, 1), rollout_batch=1, global_batch=2, epochs=1, checkpoint_every=1,
             rollouts_per_query=2, max_new_tokens=8)
    job = GRPOJob.from_config({"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
                               "media": default_config["media"], "train": default_config["train"], "grpo": g})
    out = grpo.GRPOOutputs(*(str(tmp_path / n) for n in ("model", "r.jsonl", "m.jsonl", "s.json")))
    ckpt = tmp_path / "ckpt"
    killed_at_the_end(monkeypatch, grpo)
    caplog.set_level(logging.INFO)
    for _ in range(2):  # the second resumes from the first's newest step checkpoint
        caplog.clear()
        with pytest.raises(Killed):
            grpo.run_job(tiny_dir, data, job, "video", 1, out, str(ckpt))
    assert f"resuming from step checkpoint at round 1 ({ckpt / 'step-000001'}): same model {tiny_dir}, " \
           f"data {data}, 2 media files (sha256), settings" in caplog.text

    video = replace_video(records)  # the data file is unchanged
    with pytest.raises(InputError) as err:
        grpo.run_job(tiny_dir, data, job, "video", 1, out, str(ckpt))
    msg = str(err.value)
    assert f"(media {video} changed)" in msg and "input --data" not in msg and "\n" not in msg
    assert f"delete {ckpt} to start over" in msg


def test_replaced_video_refuses_the_dpo_resume_which_logs_its_line(tmp_path, tiny_dir, tiny_policy, default_config,
                                                                   monkeypatch, caplog):
    import logging

    from veripo import jsonio
    from veripo.errors import InputError
    from veripo.stage_config import DPOJob
    from veripo.train import dpo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _, records = own_videos(tmp_path)
    pairs = tmp_path / "pairs.jsonl"
    jsonio.write_jsonl(pairs, some_pairs(tiny_policy[1], records))
    dpo_cfg = dict(default_config["dpo"], global_batch=1, epochs=2, checkpoint_every=1, heldout_fraction=0.0)
    job = DPOJob.from_config({"dtype": "float32", "attn_implementation": None, "prompts": default_config["prompts"],
                              "media": default_config["media"], "train": dict(default_config["train"], engine="torch"),
                              "dpo": dpo_cfg})
    out = dpo.DPOOutputs(*(str(tmp_path / n) for n in ("model", "m.jsonl", "h.json", "s.json")))
    ckpt = tmp_path / "ckpt"
    killed_at_the_end(monkeypatch, dpo)
    caplog.set_level(logging.INFO)
    for _ in range(2):
        caplog.clear()
        with pytest.raises(Killed):
            dpo.run_job(tiny_dir, str(pairs), job, out, str(ckpt))
    assert f"resuming from step checkpoint at round 3 ({ckpt / 'step-000003'}): same model {tiny_dir}, " \
           f"pairs {pairs}, 2 media files (sha256), settings" in caplog.text

    video = replace_video(records)
    with pytest.raises(InputError, match=rf"\(media {video} changed\)"):
        dpo.run_job(tiny_dir, str(pairs), job, out, str(ckpt))


def test_media_are_hashed_once_per_file_identity(tmp_path, monkeypatch):
    import time as time_

    from veripo import hashing

    videos = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for i, v in enumerate(videos):
        v.write_bytes(bytes([i]) * 1000)
    cache = str(tmp_path / "cache.json")
    hashed = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p, *a: hashed.append(str(p)) or real(p, *a))

    first = hashing.sha256_files_cached([str(v) for v in videos], cache)
    assert len(hashed) == 3  # written this instant: a rewrite within the same timestamp tick could keep its
    time_.sleep(hashing.RACY_NS / 1e9 + 0.1)  # ctime, so they are hashed, not cached, until they are older
    hashing.sha256_files_cached([str(v) for v in videos], cache)
    assert len(hashed) == 6
    assert hashing.sha256_files_cached([str(v) for v in videos], cache) == first and len(hashed) == 6  # hits

    st = videos[0].stat()
    videos[0].write_bytes(bytes([9]) * 1000)  # same size, mtime set back: still a new ctime
    os.utime(videos[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    again = hashing.sha256_files_cached([str(v) for v in videos], cache)
    assert hashed[6:] == [str(videos[0])] and again[str(videos[0])] != first[str(videos[0])]
    assert again[str(videos[1])] == first[str(videos[1])]

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # never opened: reading it would block
    assert hashing.sha256_files_cached([str(fifo), str(tmp_path / "gone.mp4")], cache) == {
        str(fifo): "not a regular file", str(tmp_path / "gone.mp4"): "missing"}
