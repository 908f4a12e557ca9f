"""Benchmark generation survives a SIGKILL: the rerun resumes, every key appears exactly once."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from veripo import jsonio
from veripo.eval import predictions as evaluate
from veripo.data import synthetic_benchmarks
from veripo.eval.benchmarks import load_benchmark
from veripo.eval.settings import job_settings


def read_lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()]


def test_done_keys_cuts_a_partial_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "resp')
    assert evaluate.done_keys(str(path)) == {"a", "b"}
    assert path.read_text() == '{"key": "a"}\n{"key": "b"}\n'
    path.write_text('{"key": "a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 2: not a prediction line"):
        evaluate.done_keys(str(path))


def test_partial_file_is_only_resumed_under_the_same_settings(tmp_path):
    partial = str(tmp_path / "x.predictions.partial.jsonl")
    assert evaluate.partial_path(str(tmp_path / "x.predictions.jsonl")) == partial
    assert not evaluate.resume_or_reset(partial, {"max_new_tokens": 64})
    open(partial, "w").write('{"key": "a"}\n')
    assert evaluate.resume_or_reset(partial, {"max_new_tokens": 64})
    assert os.path.exists(partial)
    assert not evaluate.resume_or_reset(partial, {"max_new_tokens": 128})  # changed: start over
    assert not os.path.exists(partial)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, tiny_dir, default_config):
    root = tmp_path / "bench"
    questions = root / "vsi_bench.json"
    jsonio.write_json(questions, synthetic_benchmarks.write_benchmark("vsi_bench", str(root), 40, seed=3, size=64,
                                                                      fps=8, seconds=1.0))
    settings = job_settings(default_config, "vsi_bench")
    settings["generation"].update(batch_size=2, max_new_tokens=48)
    out, run_info = tmp_path / "eval" / "vsi_bench.predictions.jsonl", tmp_path / "eval" / "vsi_bench.run.json"
    partial = evaluate.partial_path(str(out))
    cmd = [sys.executable, str(ROOT / "scripts" / "eval_generate.py"), "--model", tiny_dir, "--benchmark", "vsi_bench",
           "--questions", str(questions), "--video-root", str(root), "--config", json.dumps(settings),
           "--out", str(out), "--run-info", str(run_info)]
    env = dict(os.environ, VERIPO_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(partial) and open(partial).read().count("\n") >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not run_info.exists()
    written = open(partial).read().count("\n")
    assert 6 <= written < 40
    with open(partial, "a") as fh:  # as if the kill had landed in the middle of a line
        fh.write('{"key": "vsi_bench_39", "question_id": "vsi_bench_39", "resp')
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed past {written}" in rerun.stderr
    keys = [p["key"] for p in read_lines(out)]
    assert sorted(keys) == sorted(q["key"] for q in load_benchmark("vsi_bench", questions))
    assert len(set(keys)) == len(keys) == 40
    assert not os.path.exists(partial) and not os.path.exists(evaluate.meta_path(partial))
    info = json.loads(run_info.read_text())
    assert info["n_answered"] == 40 and info["skipped"] == 0 and info["generation"]["batch_size"] == 2
