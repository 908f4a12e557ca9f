"""Importers of public video-QA files (veripo/data/importers.py, rule data_import): what converts loads as a
training query whose gold answer earns the full reward; what does not is listed with its reason."""
import copy
import csv
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT
from test_workflow import job_counts, snakemake
from veripo.config import ConfigError, validate_config
from veripo.data.importers import ImportSpec, import_queries
from veripo.data.queries import load_queries
from veripo.jsonio import write_jsonl
from veripo.rewards import accuracy_reward

OUT = "data/imported/t.jsonl"
ACTIVATION = "data/imported/t.activation.jsonl"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A run directory (the working directory, as under Snakemake) with a few media files."""
    monkeypatch.chdir(tmp_path)
    for path in ("media/V/a.mp4", "media/V/b.mp4", "media/I/c.png"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(b"\0")
    return tmp_path


def perfect(answer: str) -> str:
    return f"<think>I looked.</think><answer>{answer}</answer>"


def convert(source: str, text: str, fmt: str, **spec):
    """Import ``text`` written to ``source``; the queries written to OUT as the rule would."""
    with open(source, "w", encoding="utf-8") as fh:
        fh.write(text)
    result = import_queries(ImportSpec.from_config({"source": source, "format": fmt, **spec}), "t", OUT)
    write_jsonl(OUT, result.queries)
    return result


def assert_counted(result) -> None:
    """Every record is converted, left out by a filter or the subsample, or rejected, and the stats count the
    rejections by reason."""
    s = result.stats
    assert s["records"] == s["converted"] + s["rejected"] + sum(s["left_out"].values()) + s["subsampled_out"]
    assert s["converted"] == s["video_queries"] + s["activation_queries"]
    assert s["converted"] == len(result.queries) and s["rejected"] == len(result.rejected)
    assert s["rejections"] == dict(Counter(r["reason"] for r in result.rejected))
    assert all(r["message"] and r["where"] for r in result.rejected)


def assert_gold_earns_full_reward(records: list[dict]) -> None:
    for rec in records:
        assert accuracy_reward(perfect(rec["answer"]), rec) == 1.0, rec


def video_r1(problem_id, problem_type, solution, options=(), data_type="video", path="./V/a.mp4", **extra):
    return {"problem_id": problem_id, "problem": f"Question {problem_id}?", "options": list(options),
            "solution": solution, "problem_type": problem_type, "data_type": data_type, "path": path, **extra}


def test_video_r1_records_become_queries_whose_gold_earns_the_full_reward(workdir):
    records = [
        video_r1(1, "multiple choice", "<answer>B</answer>", ["A. red", "B. blue", "C. green"]),
        video_r1(2, "numerical", "<answer>1,000</answer>", path="./V/b.mp4"),
        video_r1(3, "regression", "<answer>3.5</answer>"),
        video_r1(4, "math", "<answer>$\\frac{1}{2}$</answer>", data_type="image", path="./I/c.png"),
    ]
    result = convert("vr.json", json.dumps(records), "video_r1", media_root="media")
    assert result.stats["rejected"] == 0, result.rejected
    by_id = {int(q["id"]): q for q in result.queries}  # ids are written as strings
    assert [by_id[i]["answer_type"] for i in (1, 2, 3, 4)] == ["multiple_choice", "numeric", "numeric", "math"]
    assert by_id[1]["answer"] == "B" and by_id[1]["options"] == ["A. red", "B. blue", "C. green"]
    # the prompt shows the question alone, so the options travel in it
    assert by_id[1]["question"].endswith("\nA. red\nB. blue\nC. green")
    assert by_id[2]["answer"] == "1000" and by_id[4]["answer"] == "$\\frac{1}{2}$"

    loaded = load_queries(OUT)
    assert {q["id"] for q in loaded} == {"1", "2", "3", "4"}
    media = {int(q["id"]): q.get("video") or q.get("image") for q in loaded}
    assert media == {1: "media/V/a.mp4", 2: "media/V/b.mp4", 3: "media/V/a.mp4", 4: "media/I/c.png"}
    assert "image" in by_id[4] and "video" not in by_id[4]
    assert_gold_earns_full_reward(loaded)
    # and the reward can tell a wrong answer
    wrong = {1: "A", 2: "500", 3: "7", 4: "$\\frac{1}{3}$"}
    assert all(accuracy_reward(perfect(wrong[int(q["id"])]), q) < 1.0 for q in loaded)


def test_video_r1_records_that_cannot_be_rewarded_are_listed_with_their_reason(workdir):
    records = [
        video_r1(1, "multiple choice", "<answer>A</answer>", ["A. x", "B. y"]),
        video_r1(2, "multiple choice", "B", ["A. x", "B. y"]),
        video_r1(3, "essay", "<answer>long</answer>"),
        video_r1(4, "OCR", "<answer>STOP</answer>"),
        video_r1(5, "free-form", "<answer>a dog</answer>"),
        video_r1(6, "numerical", "<answer>2</answer>", path="./V/missing.mp4"),
        video_r1(1, "numerical", "<answer>2</answer>"),
        video_r1(7, "multiple choice", "<answer>D</answer>", ["A. x", "B. y"]),
        video_r1(8, "multiple choice", "<answer>A</answer>", ["B. x", "A. y"]),
        video_r1(9, "numerical", "<answer>two</answer>"),
        {"problem_id": 10, "problem": "Q?", "solution": "<answer>1</answer>", "problem_type": "numerical",
         "data_type": "video"},
        "not a record",
    ]
    result = convert("vr.json", json.dumps(records), "video_r1", media_root="media")
    assert_counted(result)
    assert [q["id"] for q in result.queries] == ["1"]
    reasons = {r["where"]: (r["id"], r["reason"]) for r in result.rejected}
    assert reasons == {
        "record 2": ("2", "no_answer_tag"),
        "record 3": ("3", "unknown_problem_type"),
        "record 4": ("4", "unscorable_problem_type"),
        "record 5": ("5", "unscorable_problem_type"),
        "record 6": ("6", "missing_media"),
        "record 7": ("1", "duplicate_id"),
        "record 8": ("7", "letter_not_in_options"),
        "record 9": ("8", "bad_options"),
        "record 10": ("9", "bad_answer"),
        "record 11": ("10", "missing_field"),
        "record 12": (None, "bad_record"),
    }
    messages = {r["where"]: r["message"] for r in result.rejected}
    assert "media/V/missing.mp4" in messages["record 6"] and "record 1" in messages["record 7"]
    assert "'path'" in messages["record 11"]
    # without the media check the missing file passes (GRPO's loader checks it where the media are)
    unchecked = convert("vr.json", json.dumps(records[5:6]), "video_r1", media_root="media", check_media=False)
    assert [q["video"] for q in unchecked.queries] == ["../../media/V/missing.mp4"]


def test_plain_jsonl_answer_types_are_recognised_and_ids_derived_stably(workdir):
    rows = [
        {"id": "q1", "question": "Which way?\nA. left\nB. right", "answer": "B", "options": ["A. left", "B. right"],
         "video": "media/V/a.mp4"},
        {"question": "How many?", "answer": 42, "video": "media/V/b.mp4"},
        {"question": "Side of the square of area 2?", "answer": "\\sqrt{2}", "image": "media/I/c.png"},
        {"question": "Expand (x+1)^2 - 2x", "answer": "x^2 + 1"},
        {"question": "Sum?", "answer": "2", "answer_type": "math"},
        {"question": "Which colour?", "answer": "green", "options": ["red", "green"]},
        {"question": "What colour?", "answer": "red"},
        {"question": "Which?", "answer": "7", "options": ["A. 1", "B. 2"]},
        {"question": "Both?", "answer": "1", "video": "media/V/a.mp4", "image": "media/I/c.png"},
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "")  # a blank line is no record, and the line numbers stay the file's
    lines.insert(5, '{"question": "cut off", "answ')
    text = "\n".join(lines) + "\n"
    result = convert("q.jsonl", text, "jsonl")
    assert_counted(result)
    by_id = {q["id"]: q for q in result.queries}
    assert {i: (q["answer_type"], q["answer"]) for i, q in by_id.items()} == {
        "q1": ("multiple_choice", "B"), "t-2": ("numeric", "42"), "t-3": ("math", "\\sqrt{2}"),
        "t-5": ("math", "x^2 + 1"), "t-7": ("math", "2"), "t-8": ("multiple_choice", "B")}
    # options already in the question are not repeated; bare options get their letters
    assert by_id["q1"]["question"] == rows[0]["question"]
    assert by_id["t-8"]["options"] == ["A. red", "B. green"] and by_id["t-8"]["question"].endswith("B. green")
    assert {r["where"]: r["reason"] for r in result.rejected} == {
        "line 6": "malformed_json", "line 9": "unknown_answer_type", "line 10": "unknown_answer_type",
        "line 11": "bad_field"}
    loaded = load_queries(OUT)
    assert loaded[0]["video"] == "media/V/a.mp4" and loaded[2]["image"] == "media/I/c.png"
    assert_gold_earns_full_reward(loaded)
    again = convert("q.jsonl", text, "jsonl")
    assert [q["id"] for q in again.queries] == list(by_id)


def test_csv_options_in_both_forms_and_bad_rows(workdir):
    header = ["id", "question", "answer", "options", "video", "answer_type"]
    rows = [
        ["c1", "Where does it go?", "A", '["A. up", "B. down"]', "V/a.mp4", ""],
        ["", "Colour?", "(B)", "red|blue|green", "V/b.mp4", ""],
        ["c3", "Distance\nin metres?", "$2.5$", "", "V/a.mp4", "numeric"],
        ["c4", "Too many cells", "1", "", "V/a.mp4", "", "extra"],
        ["c5", "Too few", "1"],
        ["c6", "Which?", "C", "x|y", "V/a.mp4", ""],
        ["c7", "Bad list", "A", "[not json", "V/a.mp4", ""],
        ["c8", "Bad type", "A", "x|y", "V/a.mp4", "essay"],
    ]
    with open("q.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    result = import_queries(ImportSpec.from_config({"source": "q.csv", "format": "csv", "media_root": "media"}),
                            "t", OUT)
    write_jsonl(OUT, result.queries)
    assert_counted(result)
    by_id = {q["id"]: q for q in result.queries}
    assert {i: (q["answer_type"], q["answer"]) for i, q in by_id.items()} == {
        "c1": ("multiple_choice", "A"), "t-3": ("multiple_choice", "B"), "c3": ("numeric", "2.5")}
    assert by_id["t-3"]["options"] == ["A. red", "B. blue", "C. green"]
    # the quoted question spans lines 4-5: the next row starts on line 6
    assert {r["where"]: (r["id"], r["reason"]) for r in result.rejected} == {
        "line 6": (None, "bad_row"), "line 7": (None, "bad_row"), "line 8": ("c6", "letter_not_in_options"),
        "line 9": ("c7", "bad_options"), "line 10": ("c8", "bad_field")}
    assert "expected 6 columns, got 7" in result.rejected[0]["message"]
    assert_gold_earns_full_reward(load_queries(OUT))


def mixed_video_r1() -> list[dict]:
    """Video and image records of three problem types from two sources (Video-R1's fields)."""
    kinds = [("multiple choice", "<answer>B</answer>", ["A. x", "B. y"]), ("numerical", "<answer>3</answer>", []),
             ("math", "<answer>$x^2$</answer>", [])]
    records = []
    for i in range(12):
        problem_type, solution, options = kinds[i % 3]
        image = i % 4 == 3
        records.append(video_r1(i, problem_type, solution, options, data_type="image" if image else "video",
                                path="./I/c.png" if image else "./V/a.mp4",
                                data_source="CLEVRER" if i < 6 else "LLaVA-Video"))
    return records


def test_filters_leave_records_out_before_converting_and_count_them(workdir):
    records = [*mixed_video_r1(), video_r1(12, "OCR", "<answer>x</answer>"),
               video_r1(13, "numerical", "<answer>2</answer>", path="./V/missing.mp4", data_type="image")]
    result = convert("vr.json", json.dumps(records), "video_r1", media_root="media", data_types=["video"],
                     problem_types=["multiple choice", "numerical", "OCR"])
    assert_counted(result)
    # 0..11 less the images (3, 7, 11) and the math ones (2, 5, 8); the OCR record passes the filters and is
    # rejected; the image whose file is missing is left out before its media are checked
    assert [q["id"] for q in result.queries] == ["0", "1", "4", "6", "9", "10"]
    assert result.stats["left_out"] == {"data_type": 4, "problem_type": 3}
    assert result.stats["rejections"] == {"unscorable_problem_type": 1}
    llava = convert("vr.json", json.dumps(records), "video_r1", media_root="media", data_sources=["LLaVA-Video"])
    assert [q["id"] for q in llava.queries] == ["6", "7", "8", "9", "10", "11"]
    assert llava.stats["left_out"] == {"data_source": 8}  # 12 and 13 have no data_source
    # the plain formats have no data_type: the medium a record names is its kind
    rows = [{"question": "Q1?", "answer": 1, "video": "media/V/a.mp4"},
            {"question": "Q2?", "answer": 2, "image": "media/I/c.png"}, {"question": "Q3?", "answer": 3}]
    text = "\n".join(json.dumps(r) for r in rows)
    assert [q["id"] for q in convert("q.jsonl", text, "jsonl", data_types=["image", "text"]).queries] == ["t-2", "t-3"]


def test_max_records_draws_a_seeded_subsample_in_source_order(workdir):
    text = json.dumps(mixed_video_r1())
    ids = [q["id"] for q in convert("vr.json", text, "video_r1", media_root="media").queries]
    picks = {}
    for seed in range(4):
        result = convert("vr.json", text, "video_r1", media_root="media", max_records=5, seed=seed)
        picks[seed] = [q["id"] for q in result.queries]
        assert_counted(result)
        assert result.stats["subsampled_out"] == 7
        assert picks[seed] == [i for i in ids if i in picks[seed]]  # a subset, in source order
        again = convert("vr.json", text, "video_r1", media_root="media", max_records=5, seed=seed)
        assert [q["id"] for q in again.queries] == picks[seed]
    assert len({tuple(p) for p in picks.values()}) > 1  # the seed draws
    assert [q["id"] for q in convert("vr.json", text, "video_r1", media_root="media", max_records=50).queries] == ids


def test_images_and_text_go_to_the_activation_file(workdir):
    rows = [{"id": "v", "question": "Q?", "answer": 1, "video": "media/V/a.mp4"},
            {"id": "i", "question": "Q?", "answer": 2, "image": "media/I/c.png"},
            {"id": "t", "question": "Q?", "answer": 3}]
    with open("q.jsonl", "w") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    out = run_cli({"source": "q.jsonl", "format": "jsonl"})
    assert out.returncode == 0, out.stderr
    assert [q["id"] for q in load_queries(OUT)] == ["v"]
    activation = load_queries(ACTIVATION)
    assert [q["id"] for q in activation] == ["i", "t"] and activation[0]["image"] == "media/I/c.png"
    with open("data/imported/t.stats.json") as fh:
        stats = json.load(fh)
    assert (stats["video_queries"], stats["activation_queries"]) == (1, 2)
    assert f"1 video queries into {OUT}, 2 image/text queries into {ACTIVATION}" in out.stdout
    # a source without images or text still writes the activation file, empty: a GRPO stage pointed at it stops
    with open("q.jsonl", "w") as fh:
        fh.write(json.dumps(rows[0]))
    assert run_cli({"source": "q.jsonl", "format": "jsonl", "data_types": ["video"]}).returncode == 0
    with open(ACTIVATION) as fh:
        assert fh.read() == ""
    with pytest.raises(ValueError, match=r"t\.activation\.jsonl: no queries"):
        load_queries(ACTIVATION)


def test_a_source_without_the_question_column_or_not_a_list_is_an_input_error(workdir):
    with open("q.csv", "w") as fh:
        fh.write("prompt,answer\nx,1\n")
    with pytest.raises(ValueError, match=r"q\.csv, line 1: the header lacks column\(s\) question"):
        import_queries(ImportSpec.from_config({"source": "q.csv", "format": "csv"}), "t", OUT)
    with open("vr.json", "w") as fh:
        json.dump({"problem": "x"}, fh)
    with pytest.raises(ValueError, match=r"vr\.json: expected a JSON list"):
        import_queries(ImportSpec.from_config({"source": "vr.json", "format": "video_r1"}), "t", OUT)


def run_cli(spec: dict, name: str = "t") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/data_import.py"), "--name", name,
                           "--spec", json.dumps(spec), "--out", OUT, "--activation-out", ACTIVATION,
                           "--rejected", "data/imported/t.rejected.jsonl",
                           "--stats", "data/imported/t.stats.json"], capture_output=True, text=True, timeout=60)


def test_cli_exits_2_naming_the_file_it_cannot_read(workdir):
    with open("vr.json", "w") as fh:
        fh.write('[{"problem_id": 1, "problem": "x",\n')
    out = run_cli({"source": "vr.json", "format": "video_r1"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: vr.json, line 2: malformed JSON") and out.stderr.count("\n") == 1
    assert not os.path.exists(OUT)
    # nothing importable: the rejections are still written, and the job fails
    with open("vr.json", "w") as fh:
        json.dump([video_r1(1, "OCR", "<answer>x</answer>")], fh)
    out = run_cli({"source": "vr.json", "format": "video_r1"})
    assert out.returncode == 2 and "no record could be imported" in out.stderr
    assert not os.path.exists(OUT) and os.path.exists("data/imported/t.rejected.jsonl")
    out = run_cli({"source": "vr.json", "format": "parquet"})
    assert out.returncode == 2 and "data.imports.t.format" in out.stderr


def test_config_imports_are_validated(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["data"]["imports"] = {"mine": {"source": "x.json", "format": "video_r1", "media_root": "m"}}
    cfg["resources"]["data_import"] = {"runtime": 10}
    validate_config(cfg)
    cfg["data"]["imports"]["mine"].update(data_types=["video", "text"], problem_types=["numerical"],
                                          data_sources=["CLEVRER"], max_records=100, seed=3)
    validate_config(cfg)
    for bad, key in [({"source": "x.json", "format": "tsv"}, "data.imports.mine.format"),
                     ({"source": "x", "format": "csv", "data_types": ["audio"]}, "data.imports.mine.data_types.0"),
                     ({"source": "x", "format": "csv", "max_records": 0}, "data.imports.mine.max_records"),
                     ({"source": "x", "format": "csv", "problem_types": []}, "data.imports.mine.problem_types"),
                     ({"format": "csv"}, "data.imports.mine"),
                     ({"source": "x", "format": "csv", "media": "m"}, "data.imports.mine")]:
        cfg["data"]["imports"] = {"mine": bad}
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config(cfg)


def test_the_workflow_trains_on_an_import(tmp_path, default_config):
    (tmp_path / "media/V").mkdir(parents=True)
    (tmp_path / "media/V/a.mp4").write_bytes(b"\0")
    (tmp_path / "media/I").mkdir(parents=True)
    (tmp_path / "media/I/c.png").write_bytes(b"\0")
    records = [video_r1(1, "multiple choice", "<answer>B</answer>", ["A. x", "B. y"]),
               video_r1(2, "OCR", "<answer>x</answer>"),
               video_r1(3, "numerical", "<answer>2</answer>", data_type="image", path="./I/c.png")]
    (tmp_path / "vr.json").write_text(json.dumps(records))
    cfg = copy.deepcopy(default_config)
    cfg["data"].update(train_video="data/imported/mine.jsonl",
                       imports={"mine": {"source": "vr.json", "format": "video_r1", "media_root": "media"}})
    # data_synthetic would write the import's output too
    out = snakemake(tmp_path, cfg, "-n", "iter1/grpo/rollouts.jsonl")
    assert out.returncode != 0 and "config key 'data.train_video'" in out.stdout + out.stderr

    cfg["data"]["train_activation"] = "data/imported/mine.activation.jsonl"
    cfg["data"]["synthetic"].update(enabled=False, keep=["train_activation"])
    out = snakemake(tmp_path, cfg, "-n", "iter1/grpo/rollouts.jsonl")
    assert out.returncode != 0 and "take train_activation out of data.synthetic.keep" in out.stdout + out.stderr

    cfg["data"]["synthetic"]["keep"] = []
    out = snakemake(tmp_path, cfg, "-n", "-p", "iter1/grpo/rollouts.jsonl")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    # data_synthetic writes the tiny base's warm-up traces alone
    assert job_counts(text) == {"base_build_tiny": 1, "base_warmup": 1, "data_import": 1, "data_synthetic": 1,
                                "grpo_train": 2, "total": 6}
    assert "--warmup data/warmup.jsonl" in text and "--train-video" not in text and "--benchmark" not in text
    # iteration 0 trains on the import's image queries, iteration 1 on its video queries
    assert text.count("--data data/imported/mine.activation.jsonl") == 1
    assert text.count("--data data/imported/mine.jsonl") == 1

    out = snakemake(tmp_path, cfg, "data/imported/mine.jsonl")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mine: 2 of 3 records of vr.json imported" in out.stdout
    assert [q["id"] for q in load_queries(str(tmp_path / "data/imported/mine.jsonl"))] == ["1"]
    assert [q["id"] for q in load_queries(str(tmp_path / "data/imported/mine.activation.jsonl"))] == ["3"]
    stats = json.loads((tmp_path / "data/imported/mine.stats.json").read_text())
    assert stats["rejections"] == {"unscorable_problem_type": 1}
    assert (tmp_path / "logs/data_import/mine.log").exists()
    assert (tmp_path / "logs/benchmarks/data_import/mine.tsv").exists()
