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


class Killed(Exception):
    """What a SIGKILL is to the job, without a subprocess: the run stops after its first answers."""


class ScriptedBackend:
    """Answers "A" to each question; raises Killed after ``answers`` answers (None: never)."""

    def __init__(self, answers=None):
        self.left = answers

    def describe(self):
        return {"backend": "scripted"}

    def generate(self, questions):
        from types import SimpleNamespace

        if self.left is not None:
            if self.left <= 0:
                raise Killed
            self.left -= len(questions)
        return [SimpleNamespace(text="<answer>A</answer>", num_tokens=3, truncated=False) for _ in questions]


def test_question_edited_in_place_is_not_resumed(tmp_path, default_config, monkeypatch, caplog):
    """A question edited to the same size with its mtime set back, or a video replaced, is another run:
    the partial predictions are discarded with one line naming what changed, not resumed past."""
    import logging

    from veripo.eval import job as eval_job
    from veripo.eval.backends import hf as eval_backends
    from veripo.stage_config import EvalJob

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "bench"
    questions = root / "vsi_bench.json"
    records = synthetic_benchmarks.write_benchmark("vsi_bench", str(root), 4, seed=3, size=32, fps=4, seconds=0.5)
    jsonio.write_json(questions, records)
    settings = job_settings(default_config, "vsi_bench")
    settings["generation"].update(batch_size=1, backend="hf")
    out, run_info = tmp_path / "eval" / "p.jsonl", tmp_path / "eval" / "run.json"
    partial = evaluate.partial_path(str(out))
    backend = {}
    monkeypatch.setattr(eval_backends, "load_backend", lambda *a, **k: backend["now"])
    caplog.set_level(logging.INFO)

    def run(answers):
        backend["now"] = ScriptedBackend(answers)
        caplog.clear()
        eval_job.run_generation("tiny", "vsi_bench", str(questions), str(root), EvalJob.from_config(settings),
                                str(out), str(run_info))

    with pytest.raises(Killed):
        run(1)
    with pytest.raises(Killed):
        run(1)  # nothing changed: resumed, one more answer
    assert f"resuming {partial}: same checkpoint, question file and " in caplog.text
    assert len(read_lines(partial)) == 2

    text = questions.read_text(encoding="utf-8")
    st = questions.stat()
    q = records[0]["question"]
    edited = q[:-1] + ("!" if q[-1] != "!" else ".")
    questions.write_text(text.replace(json.dumps(q, ensure_ascii=False), json.dumps(edited, ensure_ascii=False), 1),
                         encoding="utf-8")
    os.utime(questions, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert questions.stat().st_size == st.st_size and questions.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(Killed):
        run(1)
    assert f"discarding {partial} and starting over: written with another question_file" in caplog.text
    assert "resuming" not in caplog.text and len(read_lines(partial)) == 1

    videos = sorted({root / r["video_path"] for r in records})
    video, other = next((a, b) for a in videos for b in videos if a.read_bytes() != b.read_bytes())
    video.write_bytes(other.read_bytes())  # another valid video under the same name
    run(None)
    assert f"written with another media {video}" in caplog.text and "generated 4, resumed past 0" in caplog.text
    assert len(read_lines(out)) == 4
