"""Bad input fails with the file, line and field named, and leaves no partial artifact."""
import json
import os

import pytest

from veripo import jsonio

from veripo.data import queries

from veripo.media import decode as video
from veripo.config import ConfigError
from veripo.errors import InputError
from veripo.verify.judges.base import JudgeError


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


@pytest.mark.parametrize("line,message", [
    ('"answer": NaN', r"expected a finite number, got nan"),
    ('"answer": Infinity', r"expected a finite number, got inf"),
    ('"answer": 1e400', r"expected a finite number, got inf"),
    ('"answer": "1e400"', r'a numeric answer must be a finite number, got "1e400"'),
    ('"answer": "nan"', r'a numeric answer must be a finite number, got "nan"'),
    ('"answer": "two"', r'a numeric answer must parse as a number, got "two"'),
    ('"answer": [2]', r"expected a string or number, got \[2\]"),
    ('"answer": {"value": 2}', r'expected a string or number, got \{"value": 2\}'),
    ('"answer": true', r"expected a string or number, got true"),
])
def test_numeric_gold_must_be_a_finite_number(tmp_path, line, message):
    bad = '{"id": "q2", "question": "How many?", "answer_type": "numeric", ' + line + "}"
    p = write(tmp_path / "train.jsonl", [json.dumps(GOOD), bad])
    with pytest.raises(InputError, match=r"train\.jsonl, line 2, field 'answer': " + message):
        queries.load_queries(p)


MC = {"id": "m1", "question": "Which?\nA. left\nB. right", "answer_type": "multiple_choice"}


@pytest.mark.parametrize("answer,options,message", [
    ("Z", None, r'a multiple_choice answer is one letter A-J, got "Z"'),
    ("b", None, r'a multiple_choice answer is one letter A-J, got "b"'),
    ("AB", None, r'a multiple_choice answer is one letter A-J, got "AB"'),
    (2, None, r"a multiple_choice answer is one letter A-J, got 2"),
    (["A"], None, r'expected a string or number, got \["A"\]'),
    ("C", ["A. left", "B. right"], r"answer 'C' is not one of the offered options \(A-B\)"),
    ("A", [], r"answer 'A' is not one of the offered options \(none\)"),
])
def test_choice_gold_must_be_an_offered_letter(tmp_path, answer, options, message):
    p = write(tmp_path / "train.jsonl", [json.dumps(GOOD), json.dumps(dict(MC, answer=answer, options=options))])
    with pytest.raises(InputError, match=r"train\.jsonl, line 2, field 'answer': " + message):
        queries.load_queries(p)


def test_valid_golds_load(tmp_path):
    rows = [GOOD, dict(GOOD, id="q2", answer=3.5), dict(GOOD, id="q3", answer=" 12 "),
            dict(MC, answer="B", options=["A. left", "B. right"]), dict(MC, id="m2", answer="J"),
            dict(GOOD, id="x1", answer="\\frac{1}{2}", answer_type="math")]
    p = write(tmp_path / "train.jsonl", [json.dumps(r) for r in rows])
    assert [r["id"] for r in queries.load_queries(p)] == ["q1", "q2", "q3", "m1", "m2", "x1"]


@pytest.mark.parametrize("field,value,message", [
    ("options", "A. left", r'field \'options\': expected a list or null, got "A. left"'),
    ("question", None, r"field 'question': expected a string, got null"),
    ("id", ["q"], r'field \'id\': expected a string or integer, got \["q"\]'),
    ("answer", "  ", None),
])
def test_other_fields_are_typed(tmp_path, field, value, message):
    rec = dict(GOOD, answer_type="math") if message is None else dict(GOOD)
    rec[field] = value
    p = write(tmp_path / "train.jsonl", [json.dumps(rec)])
    with pytest.raises(InputError, match=r"train\.jsonl, line 1, " + (message or r"field 'answer': .*empty")):
        queries.load_queries(p)


@pytest.mark.parametrize("lines", [[], ["", "  "]])
def test_empty_training_file(tmp_path, lines):
    p = write(tmp_path / "train_video.jsonl", lines)
    with pytest.raises(InputError, match=r"train_video\.jsonl: no queries"):
        queries.load_queries(p)


def test_bad_utf8_names_file_and_line(tmp_path):
    jl = tmp_path / "rollouts.jsonl"
    jl.write_bytes(json.dumps(GOOD).encode() + b'\n{"id": "q2", "question": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"rollouts\.jsonl, line 2: not valid UTF-8 \(byte 0xe9 at column 30\)"):
        jsonio.read_jsonl(jl)
    js = tmp_path / "bench.json"
    js.write_bytes(b'[\n  {"a": 1},\n  {"b": "\xff"}\n]\n')
    with pytest.raises(InputError, match=r"bench\.json, line 3: not valid UTF-8 \(byte 0xff\)"):
        jsonio.read_json(js)


def test_bad_utf8_through_a_cli_is_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    data = tmp_path / "q.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b"\n" + json.dumps(dict(GOOD, id="q2")).encode()[:-1] + b'\xc3"}\n')
    roll = write(tmp_path / "r.jsonl", [])
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "curriculum_filter.py"), "--data", str(data),
                           "--rollouts", roll, "--config", '{"discard_fraction": 0.8, "seed": 0}',
                           "--out", str(tmp_path / "kept.jsonl")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "q.jsonl, line 2: not valid UTF-8" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value,got", [(None, "null"), (3, "an integer"), (["x"], "a list"), (True, "a boolean")])
def test_require_types_names_file_line_field(tmp_path, value, got):
    rows = [{"rollout_id": "a", "completion": "<answer>1</answer>", "_line": 1},
            {"rollout_id": "b", "completion": value, "_line": 2}]
    with pytest.raises(InputError, match=rf"rollouts\.jsonl, line 2, field 'completion': expected a string, got {got}"):
        jsonio.require_types(rows, {"rollout_id": str, "completion": str}, "rollouts.jsonl")
    jsonio.require_types(rows[:1], {"rollout_id": str, "completion": str}, "rollouts.jsonl")
    with pytest.raises(InputError, match=r"line 2, field 'iteration': expected an integer, got a boolean"):
        jsonio.require_types([{"iteration": True, "_line": 2}], {"iteration": int}, "rollouts.jsonl")


def test_truncated_safetensors_names_the_file(tmp_path, tiny_dir):
    import shutil

    from veripo.model import policy

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, ckpt)
    weights = ckpt / "model.safetensors"
    os.truncate(weights, weights.stat().st_size * 4 // 5)
    with pytest.raises(InputError, match=r"ckpt/model\.safetensors: unreadable safetensors checkpoint: .*") as exc:
        policy.load_policy(str(ckpt))
    assert "\n" not in str(exc.value)
    (ckpt / "config.json").write_text('{"model_type": ')
    with pytest.raises(InputError, match=r"ckpt: cannot load the checkpoint: .*config"):
        policy.load_policy(str(ckpt))


@pytest.mark.parametrize("error", [
    JudgeError("http judge at http://127.0.0.1:9: connection refused\nafter 3 tries"),
    ConfigError("invalid config:\n  config key 'a': x\n  config key 'b': y"),
    InputError("r.jsonl", "missing required field", line=3, field="completion"),
])
def test_main_guard_prints_one_line_and_exits_2(capsys, error):
    from veripo.cli import main_guard

    @main_guard
    def fails():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        fails()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
