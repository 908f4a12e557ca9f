"""Missing or unreadable media stop a benchmark run before any generation, naming the question file;
with skip_missing_videos those questions are skipped and the score says how many. The check decodes
what generation will, so a video cut short is caught too, not only one that fails to open."""
import json
import re
import shutil
import subprocess
import sys

import av
import pytest

from conftest import ROOT
from test_video import truncated_video
from veripo import jsonio
from veripo.eval.backends import hf as eval_backends
from veripo.eval import job as eval_job
from veripo.media import checks as media_check
from veripo.data import synthetic_benchmarks
from veripo.media import decode as video
from veripo.eval.benchmarks import load_benchmark
from veripo.eval.backends.hf import Generation
from veripo.eval.report import score_report
from veripo.errors import InputError
from veripo.stage_config import EvalJob

SETTINGS = {
    "dtype": "float32", "attn_implementation": None, "prompts": {"option": "{Question}", "number": "{Question}"},
    "generation": {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.05, "max_new_tokens": 8,
                   "backend": "hf", "batch_size": 2, "vllm": {}},
    "media": {"fps": 2.0, "min_frames": 2, "max_frames": 8, "min_pixels": 3136, "max_pixels": 12544, "frame_cache": None,
              "frame_cache_max_bytes": None},
    "skip_missing_videos": False,
}


@pytest.fixture()
def tomato(tmp_path):
    """A synthetic TOMATO file (repeated question ids) with one video deleted and one corrupted."""
    root = tmp_path / "bench"
    records = synthetic_benchmarks.write_benchmark("tomato", str(root), 6, seed=1, size=32, fps=4, seconds=1.0)
    path = root / "tomato.json"
    jsonio.write_json(path, records)
    return path, root, records


def break_videos(root, records):
    """Delete the first record's video (shared by two questions), garble the last one's."""
    (root / records[0]["video_path"]).unlink()
    (root / records[-1]["video_path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    return {records[0]["video_path"], records[-1]["video_path"]}


class EchoBackend:
    """Stands in for a model: answers every question with its gold letter."""

    name = "hf"

    def __init__(self):
        self.seen = []

    def describe(self):
        return {"backend": "hf", "device": "cpu"}

    def generate(self, questions):
        self.seen += [q["key"] for q in questions]
        return [Generation(f"<think>so the answer is {q['answer']}</think><answer>${q['answer']}$</answer>",
                           5, False) for q in questions]


def test_probe_video_tells_missing_unreadable_and_good(tomato, tmp_path):
    path, root, records = tomato
    good = str(root / records[2]["video_path"])
    assert media_check.probe_video(good) is None
    assert media_check.probe_video(good, SETTINGS["media"]) is None
    assert media_check.probe_video(str(tmp_path / "nope.mp4")) == "missing"
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert media_check.probe_video(str(tmp_path / "bad.mp4")).startswith("unreadable")
    assert media_check.image_problem("!!not base64!!").startswith("unreadable")
    assert media_check.image_problem(None) is None


def test_problems_stop_the_run_naming_the_question_file(tomato):
    path, root, records = tomato
    broken = break_videos(root, records)
    questions = load_benchmark("tomato", path)
    with pytest.raises(InputError) as err:
        media_check.screen_questions(questions, str(root), str(path), "tomato", skip=False)
    message = str(err.value)
    assert message.startswith(f"{path}, field 'video_path': 3 of 6 questions have a missing or unreadable")
    assert "(2 files)" in message and "skip_missing_videos" in message
    for video in broken:
        assert str(root / video) in message
    assert "(missing)" in message and "(unreadable" in message


def test_cli_stops_before_loading_any_model(tomato, tmp_path):
    path, root, records = tomato
    break_videos(root, records)
    out = tmp_path / "preds.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_generate.py"), "--model", str(tmp_path / "none"),
                           "--benchmark", "tomato", "--questions", str(path), "--video-root", str(root),
                           "--config", json.dumps(SETTINGS), "--out", str(out), "--run-info", str(tmp_path / "r.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {path}, field 'video_path': 3 of 6 questions" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_skip_mode_skips_and_the_score_counts_them(tomato, tmp_path, monkeypatch):
    path, root, records = tomato
    break_videos(root, records)
    backend = EchoBackend()
    monkeypatch.setattr(eval_backends, "load_backend", lambda *a: backend)
    settings = dict(SETTINGS, skip_missing_videos=True)
    out, run = tmp_path / "preds.jsonl", tmp_path / "run.json"
    info = eval_job.run_generation("ckpt", "tomato", str(path), str(root), EvalJob.from_config(settings), str(out),
                                   str(run))
    questions = load_benchmark("tomato", path)
    skipped = [questions[0]["key"], questions[1]["key"], questions[-1]["key"]]
    assert questions[0]["question_id"] == questions[1]["question_id"]  # TOMATO's repeated id, two keys
    assert info["skipped"] == 3 and [s["key"] for s in info["skipped_questions"]] == skipped
    assert sorted(backend.seen) == sorted(q["key"] for q in questions if q["key"] not in skipped)
    assert json.loads(run.read_text()) == info and info["settings"] == settings  # the whole EvalJob
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["key"] for p in lines] == backend.seen
    score = score_report("tomato", str(out), str(path), info, "ckpt", {"backend": "rule"})
    assert score["n"] == 3 and score["overall"] == 100.0
    assert score["skipped"] == 3 and score["skipped_keys"] == skipped
    assert score["inconsistency"]["counts"]["CONSISTENT"] == 3
    assert score["provenance"]["media"] == SETTINGS["media"]
    assert score["provenance"]["generation"]["backend"] == "hf"
    # a prediction for a skipped question, or a missing one, is an error
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text() + json.dumps(dict(lines[0], key=skipped[0])) + "\n")
    with pytest.raises(InputError, match=re.escape(f"key '{skipped[0]}' was skipped")):
        score_report("tomato", str(bad), str(path), info, "ckpt", {"backend": "rule"})
    bad.write_text("".join(line + "\n" for line in out.read_text().splitlines()[1:]))
    with pytest.raises(InputError, match="1 of 3 questions .* have no prediction"):
        score_report("tomato", str(bad), str(path), info, "ckpt", {"backend": "rule"})


def test_inline_image_that_does_not_decode_is_a_problem(tmp_path):
    root = tmp_path / "bench"
    records = synthetic_benchmarks.write_benchmark("video_mmmu", str(root), 3, seed=2, size=32, fps=4, seconds=1.0)
    assert records[2]["image"]
    records[2]["image"] = "bm90IGFuIGltYWdl"  # base64 of "not an image"
    jsonio.write_json(root / "q.json", records)
    problems = media_check.find_media_problems(load_benchmark("video_mmmu", root / "q.json"), str(root))
    assert [(p.key, p.path) for p in problems] == [(records[2]["question_id"], "<inline image>")]
    shutil.rmtree(root / "VideoMMMU")
    assert len(media_check.find_media_problems(load_benchmark("video_mmmu", root / "q.json"), str(root))) == 4


def test_video_cut_at_80_percent_is_caught_before_generation(tomato, tmp_path, monkeypatch):
    """Its start decodes (the old first-frame probe passed it, and generation then died on it midway);
    decoding as generation does fails, so it stops the job up front or, with skip_missing_videos, is
    skipped and counted."""
    path, root, records = tomato
    cut = root / records[2]["video_path"]
    truncated_video(cut)
    with av.open(str(cut)) as container:
        next(container.decode(video=0))
    with pytest.raises(InputError, match="unreadable video"):
        video.decode_video(str(cut), *video.sampling(SETTINGS["media"]))  # what eval_inputs.prepare does
    questions = load_benchmark("tomato", path)
    with pytest.raises(InputError, match=rf"1 of 6 questions .*{re.escape(str(cut))} \(unreadable: "):
        media_check.screen_questions(questions, str(root), str(path), "tomato", False, SETTINGS["media"])

    backend = EchoBackend()
    monkeypatch.setattr(eval_backends, "load_backend", lambda *a: backend)
    out, run = tmp_path / "preds.jsonl", tmp_path / "run.json"
    with pytest.raises(InputError, match=re.escape(str(cut))):
        eval_job.run_generation("ckpt", "tomato", str(path), str(root), EvalJob.from_config(SETTINGS), str(out),
                                str(run))
    assert backend.seen == [] and not out.exists()
    info = eval_job.run_generation("ckpt", "tomato", str(path), str(root),
                                   EvalJob.from_config(dict(SETTINGS, skip_missing_videos=True)), str(out), str(run))
    cut_key = questions[2]["key"]
    assert info["skipped"] == 1 and info["skipped_questions"][0]["key"] == cut_key
    assert info["skipped_questions"][0]["reason"].startswith("unreadable: ")
    assert cut_key not in backend.seen and len(backend.seen) == 5
    score = score_report("tomato", str(out), str(path), info, "ckpt", {"backend": "rule"})
    assert score["skipped"] == 1 and score["skipped_keys"] == [cut_key] and score["n"] == 5
