"""Inputs with hostile shapes (issue 20, items 2 and 3): every reader checks what later stages assume,
and every failure is one line naming the file (and line) instead of a traceback, a hang or a later crash.

- ids: one type per file (strings), so ``1`` and ``"1"`` are one id and no stage sorts a mix;
- question length: bounded by ``data.max_question_chars`` at load and at import;
- golds: finite everywhere (training, benchmark questions, predictions);
- media paths: confined to the import's media root; regular files only (a FIFO would block a reader);
- errors: deep JSON nesting, YAML syntax, non-UTF-8 predictions, a truncated tokenizer.json, a full disk
  during a checkpoint save; text from data printed to the terminal is escaped.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from conftest import ROOT
from veripo import jsonio
from veripo.config import ConfigError, load_config, validate_config
from veripo.data import queries
from veripo.data.importers import ImportSpec, import_queries
from veripo.errors import DiskFullError, InputError
from veripo.eval.benchmarks import load_benchmark
from veripo.eval.scoring import read_predictions

GOOD = {"id": "q1", "question": "How many?", "answer": "2", "answer_type": "numeric"}


def write_jsonl(path: Path, records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


@contextlib.contextmanager
def no_hang(seconds: int = 5):
    """Fail instead of hanging when a reader blocks (opening a FIFO waits for a writer)."""
    def timeout(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def one_line(text: str) -> bool:
    return text.strip() != "" and "\n" not in text.strip() and "Traceback" not in text


# ids ---------------------------------------------------------------------------------------------

def test_ids_are_strings_and_1_and_quoted_1_are_one_id(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [dict(GOOD, id=2), dict(GOOD, id="10"), dict(GOOD, id=3)])
    ids = [r["id"] for r in queries.load_queries(p)]
    assert ids == ["2", "10", "3"] and sorted(ids)  # a later stage's sort cannot meet str and int
    p = write_jsonl(tmp_path / "dup.jsonl", [dict(GOOD, id=1), dict(GOOD, id="1")])
    with pytest.raises(InputError, match=r"dup\.jsonl, line 2, field 'id': duplicate id '1' \(first on line 1\)"):
        queries.load_queries(p)


def test_import_writes_string_ids_and_rejects_1_after_quoted_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"id": 1, "question": "How many?", "answer": "2"}, {"id": "1", "question": "And now?", "answer": "3"},
            {"id": 7, "question": "And then?", "answer": "4"}]
    write_jsonl(tmp_path / "src.jsonl", rows)
    result = import_queries(ImportSpec.from_config({"source": "src.jsonl", "format": "jsonl"}), "t", "out.jsonl")
    assert [q["id"] for q in result.queries] == ["1", "7"]
    assert [r["reason"] for r in result.rejected] == ["duplicate_id"]


# question length ---------------------------------------------------------------------------------

def test_a_question_longer_than_max_question_chars_is_refused_at_load(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [GOOD, dict(GOOD, id="q2", question="x" * 98_000)])
    with pytest.raises(InputError, match=r"q\.jsonl, line 2, field 'question': 98000 characters, more than "
                                         r"data.max_question_chars \(8192\)"):
        queries.load_queries(p)
    assert len(queries.load_queries(p, max_question_chars=100_000)) == 2


def test_the_import_rejects_a_question_too_long(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "src.jsonl", [{"question": "q" * 20_000, "answer": "2"}, {"question": "ok?", "answer": "2"}])
    spec = ImportSpec.from_config({"source": "src.jsonl", "format": "jsonl"})
    result = import_queries(spec, "t", "out.jsonl")
    assert [r["reason"] for r in result.rejected] == ["question_too_long"] and len(result.queries) == 1
    assert "20000 characters" in result.rejected[0]["message"]
    assert import_queries(spec, "t", "out.jsonl", max_question_chars=20_000).stats["rejected"] == 0


def test_max_question_chars_is_a_validated_config_key_every_policy_job_gets():
    from veripo.stage_config import GRPOJob

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert config["data"]["max_question_chars"] == 8192
    bad = json.loads(json.dumps(config))
    bad["data"]["max_question_chars"] = 0
    with pytest.raises(ConfigError, match=r"data.max_question_chars"):
        validate_config(bad)
    assert "max_question_chars" in (ROOT / "docs/config.md").read_text()
    assert "max_question_chars" in (ROOT / "rules/common.smk").read_text().split("def policy_args")[1][:600]
    assert "max_question_chars" in {f for f in GRPOJob.__dataclass_fields__}


# finite golds ------------------------------------------------------------------------------------

def test_a_training_answer_past_floats_range_is_an_input_error(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"id": "a", "question": "q", "answer": 1' + "0" * 400 + ', "answer_type": "numeric"}\n')
    with pytest.raises(InputError, match=r"line 1, field 'answer'"):
        queries.load_queries(str(p))


@pytest.mark.parametrize("answer", ["NaN", "Infinity", "1e400", '"nan"', '"inf"', '"1e400"'])
def test_a_benchmark_gold_that_is_not_finite_is_refused(tmp_path, answer):
    record = ('{"question_id": "1", "video_path": "v.mp4", "question": "How many chairs are there?", '
              f'"answer": {answer}}}')
    p = tmp_path / "bench.json"
    p.write_text(f"[{record}]")
    with pytest.raises(InputError, match=r"bench\.json, record index 0, field 'answer': expected a finite number"):
        load_benchmark("vsi_bench", p)


def test_predictions_with_a_gold_that_is_not_finite_are_refused(tmp_path):
    p = write_jsonl(tmp_path / "pred.jsonl", [{"key": "1", "answer": "inf", "answer_type": "numeric",
                                               "category": None, "response": "<answer>3</answer>"}])
    with pytest.raises(InputError, match=r"pred\.jsonl, line 1, field 'answer': .*finite"):
        read_predictions(p, "vsi_bench")


# media paths: confined to the root, regular files only -------------------------------------------

def media_import(tmp_path, video, **spec):
    (tmp_path / "media").mkdir(exist_ok=True)
    write_jsonl(tmp_path / "src.jsonl", [{"question": "How many?", "answer": "2", "video": video}])
    return import_queries(ImportSpec.from_config({"source": "src.jsonl", "format": "jsonl", "media_root": "media",
                                                  **spec}), "t", "out.jsonl")


@pytest.mark.parametrize("video", ["../" * 30 + "etc/passwd", "/etc/passwd", "link/passwd"],
                         ids=["dotdot", "absolute", "symlink"])
def test_the_import_refuses_media_outside_its_root(tmp_path, monkeypatch, video):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "media").mkdir()
    (tmp_path / "media/link").symlink_to("/etc")
    result = media_import(tmp_path, video)
    assert [r["reason"] for r in result.rejected] == ["outside_media_root"], result.rejected
    assert media_import(tmp_path, video, allow_outside_media_root=True).stats["converted"] == 1


def test_the_import_keeps_media_inside_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "media/V").mkdir(parents=True)
    (tmp_path / "media/V/a.mp4").write_bytes(b"x")
    assert media_import(tmp_path, "./V/../V/a.mp4").stats["converted"] == 1


def test_a_fifo_is_refused_up_front_by_every_reader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipe = fifo(tmp_path / "pipe")
    with no_hang():
        for read in (jsonio.read_text, jsonio.read_json, jsonio.read_jsonl, queries.load_queries):
            with pytest.raises(InputError, match=r"pipe: expected a regular file, got a FIFO"):
                read(pipe)
        with pytest.raises(InputError, match=r"expected a regular file, got a FIFO"):
            read_predictions(pipe, "vsi_bench")
        p = write_jsonl(tmp_path / "q.jsonl", [dict(GOOD, video="pipe")])
        with pytest.raises(InputError, match=r"line 1, field 'video': video is not a regular file"):
            queries.load_queries(p)
        (tmp_path / "media").mkdir()
        os.mkfifo(tmp_path / "media/v.mp4")
        assert [r["reason"] for r in media_import(tmp_path, "v.mp4").rejected] == ["bad_media"]


# one-line errors naming the file -----------------------------------------------------------------

def test_deep_json_nesting_is_an_input_error_not_a_recursion_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deep = "[" * 200_000 + "]" * 200_000
    (tmp_path / "deep.json").write_text(deep)
    with pytest.raises(InputError, match=r"deep\.json: JSON nested too deeply"):
        jsonio.read_json(tmp_path / "deep.json")
    (tmp_path / "deep.jsonl").write_text(json.dumps(GOOD) + "\n" + '{"a": ' + deep + "}\n")
    with pytest.raises(InputError, match=r"deep\.jsonl, line 2: JSON nested too deeply"):
        jsonio.read_jsonl(tmp_path / "deep.jsonl")
    with pytest.raises(InputError, match=r"deep\.json: JSON nested too deeply"):
        import_queries(ImportSpec.from_config({"source": "deep.json", "format": "video_r1"}), "t", "out.jsonl")
    result = import_queries(ImportSpec.from_config({"source": "deep.jsonl", "format": "jsonl"}), "t", "out.jsonl")
    assert result.rejected[-1]["reason"] == "malformed_json" and result.rejected[-1]["where"] == "line 2"


def test_a_yaml_syntax_error_in_a_config_names_file_and_line(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("data:\n  train_video: a.jsonl\n  imports: {x: [1, 2}\n")
    with pytest.raises(InputError, match=r"site\.yaml, line 3: not valid YAML") as err:
        load_config(bad)
    assert one_line(str(err.value))

    from veripo.commands import main

    (tmp_path / "model").mkdir()
    out = CliRunner().invoke(main, ["infer", "--model", str(tmp_path / "model"), "--question", "q",
                                    "--config", str(bad)])
    assert out.exit_code == 2 and one_line(out.output), out.output
    assert out.output.startswith(f"error: {bad}, line 3: not valid YAML")


def test_score_names_the_file_and_line_of_bytes_that_are_not_utf8(tmp_path):
    from veripo.commands import main

    pred = tmp_path / "pred.jsonl"
    line = json.dumps({"key": "1", "answer": "2", "answer_type": "numeric", "category": None, "response": "2"})
    pred.write_bytes(line.encode() + b"\n" + line.encode()[:-3] + b"\xff\xfe\"}\n")
    out = CliRunner().invoke(main, ["score", "--benchmark", "vsi_bench", "--predictions", str(pred),
                                    "--output", str(tmp_path / "s.json")])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert f"{pred}, line 2: not valid UTF-8 (byte 0xff" in out.output, out.output


def test_a_truncated_tokenizer_json_names_the_file(tmp_path):
    from veripo.model.text_tokenizer import load_text_tokenizer

    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "truncation": null, "added_tok')
    with pytest.raises(InputError, match=r"tokenizer\.json: unreadable tokenizer: EOF while parsing") as err:
        load_text_tokenizer(str(tmp_path))
    assert one_line(str(err.value))


class FullDiskEngine:
    """An engine whose state write hits a full disk, as a real one would from inside save_state."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def save_state(self, folder):
        (Path(folder) / "partial.bin").write_bytes(b"x" * 1024)
        raise self.exc


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 RuntimeError("basic_ios::clear: iostream error")])
def test_a_full_disk_during_a_step_checkpoint_is_one_line_naming_the_path(tmp_path, exc):
    import torch

    from veripo.train.checkpoints import StepCheckpointer, run_fingerprint
    from veripo.train.distributed import Dist

    ckpt = StepCheckpointer(tmp_path / "ckpt", run_fingerprint({}, {}))
    with pytest.raises(DiskFullError) as err:
        ckpt.save(FullDiskEngine(exc), torch.Generator(), {"round": 2, "metrics": []}, Dist(0, 1, 0))
    msg = str(err.value)
    assert one_line(msg) and str(tmp_path / "ckpt/.step-000002.tmp") in msg and "MiB free" in msg, msg
    assert err.value.errno == errno.ENOSPC
    assert not (tmp_path / "ckpt/.step-000002.tmp").exists()  # the half-written step gives its space back


def test_a_full_disk_while_saving_a_model_is_one_line_naming_the_path(tmp_path):
    from veripo.cli import main_guard
    from veripo.train.checkpoints import save_model

    class Model:
        def save_pretrained(self, folder):
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "iter1/grpo/model"
    with pytest.raises(DiskFullError, match=rf"{out}: no space left on the device, \d+ MiB free"):
        save_model(Model(), None, out)
    assert not out.exists()

    @click.command()
    @main_guard
    def job():
        save_model(Model(), None, out)

    result = CliRunner().invoke(job, [])
    assert result.exit_code == 2 and f"error: {out}: no space left on the device" in result.stderr


def test_text_from_data_is_escaped_on_the_terminal(tmp_path):
    from veripo.cli import terminal_safe
    from veripo.commands import main

    assert terminal_safe("a\x1b[2J\rb\u202ec\nd\te") == "a\\x1b[2J\\rb\\u202ec\nd\te"
    pair = {"pair_id": "p1", "query_id": "q\x1b]0;owned\x07", "kind": "consistency",
            "chosen": "<think>ok</think><answer>\x1b[31mB</answer>", "rejected": "<answer>A</answer>\r",
            "rejected_reasons": ["wrong\x1b[0m"], "query": {"question": "Which\x1b[2J one?", "answer": "B"}}
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [pair])
    out = CliRunner().invoke(main, ["pairs", "show", pairs, "--width", "100"])
    assert out.exit_code == 0, out.output
    assert "\x1b" not in out.output and "\r" not in out.output and "\x07" not in out.output
    assert "Which\\x1b[2J one?" in out.output and "\\x1b[31mB" in out.output

