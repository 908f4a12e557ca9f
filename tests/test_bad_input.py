"""Bad input fails with the file, line and field named, and leaves no partial artifact."""
import json
import os

import pytest

from veripo import jsonio, queries, video
from veripo.errors import InputError


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


GOOD = {"id": "q1", "question": "How many?", "answer": "2", "answer_type": "numeric"}


def test_malformed_jsonl_line(tmp_path):
    p = write(tmp_path / "q.jsonl", [json.dumps(GOOD), '{"id": "q2", "question": '])
    with pytest.raises(InputError, match=r"q\.jsonl, line 2: malformed JSON"):
        queries.load_queries(p)


def test_missing_field_and_unknown_answer_type(tmp_path):
    p = write(tmp_path / "q.jsonl", [json.dumps({k: v for k, v in GOOD.items() if k != "answer"})])
    with pytest.raises(InputError, match=r"line 1, field 'answer': missing required field"):
        queries.load_queries(p)
    p = write(tmp_path / "q2.jsonl", [json.dumps(GOOD), json.dumps(dict(GOOD, id="q2", answer_type="essay"))])
    with pytest.raises(InputError, match=r"q2\.jsonl, line 2, field 'answer_type': unknown answer type 'essay'"):
        queries.load_queries(p)


def test_missing_video(tmp_path):
    p = write(tmp_path / "q.jsonl", [json.dumps(dict(GOOD, video="videos/nope.mp4"))])
    with pytest.raises(InputError, match=r"line 1, field 'video': video file not found: .*nope\.mp4"):
        queries.load_queries(p)


def test_unreadable_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(InputError, match=r"q\.jsonl, line 3, field 'video': unreadable video"):
        video.decode_video(str(bad), fps=2.0, source="q.jsonl, line 3")


def test_duplicate_ids(tmp_path):
    p = write(tmp_path / "q.jsonl", [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(InputError, match=r"line 2, field 'id': duplicate id 'q1' \(first on line 1\)"):
        queries.load_queries(p)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"

    def records():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        jsonio.write_jsonl(out, records())
    assert os.listdir(tmp_path) == []
    jsonio.write_jsonl(out, [{"a": 1, "_private": 2}])
    assert out.read_text() == '{"a": 1}\n'


def test_cli_reports_bad_input_without_traceback(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    data = write(tmp_path / "q.jsonl", [json.dumps(GOOD), "not json"])
    roll = write(tmp_path / "r.jsonl", [])
    out = tmp_path / "kept.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "curriculum_filter.py"), "--data", data,
                           "--rollouts", roll, "--config", '{"discard_fraction": 0.8, "seed": 0}', "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "q.jsonl, line 2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
