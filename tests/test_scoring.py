from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from veripo.benchmarks import load_benchmark
from veripo.scoring import read_predictions, score_predictions

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "benchmarks"


def item(category: str | None, answer: str, answer_type: str, response: str, key: str = "k") -> dict:
    return {"key": key, "answer": answer, "answer_type": answer_type, "category": category, "response": response}


def gold_response(answer: str) -> str:
    return f"<think>...</think><answer> ${answer}$ </answer>"


def write_jsonl(path: Path, records: list) -> str:
    path.write_text("".join(json.dumps(rec) + "\n" for rec in records))
    return str(path)


def authors_format(questions: list[dict], responses: list[str]) -> list[dict]:
    return [
        {"question": q["raw"], "ground_truth": q["raw"]["answer"], "model_output": response}
        for q, response in zip(questions, responses)
    ]


def run_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/score.py", *args], cwd=REPO, capture_output=True, text=True)


def test_vsi_official_aggregation_by_hand():
    items = [
        item("object_counting", "2", "numeric", "<answer>$2.2$</answer>"),  # 0.9
        item("object_counting", "2", "numeric", "<answer>3</answer>"),  # 0.1
        item("object_rel_direction_easy", "A", "multiple_choice", "<answer>$A$</answer>"),  # 1
        item("object_rel_direction_medium", "B", "multiple_choice", "<answer>B. left</answer>"),  # 0
        item("object_rel_direction_hard", "C", "multiple_choice", "<answer>(C)</answer>"),  # 1
        item("route_planning", "D", "multiple_choice", "D"),  # 0: no answer tags
    ]
    result = score_predictions("vsi_bench", items)
    assert result["benchmark"] == "vsi_bench"
    assert result["n"] == 6
    assert result["overall"] == pytest.approx(50.0)
    assert result["categories"] == pytest.approx({
        "object_counting": 50.0,
        "object_rel_direction_easy": 100.0,
        "object_rel_direction_hard": 100.0,
        "object_rel_direction_medium": 0.0,
        "route_planning": 0.0,
    })
    assert result["official_categories"] == pytest.approx({
        "object_counting": 50.0, "object_rel_direction": 200 / 3, "route_planning": 0.0,
    })
    assert result["official_overall"] == pytest.approx((50.0 + 200 / 3 + 0.0) / 3)
    assert "per_question" not in result


def test_full_vsi_bench_gold_answers_score_100():
    questions = load_benchmark("vsi_bench", str(DATA / "vsi_bench.json"))
    items = [
        item(q["category"], q["answer"], q["answer_type"], gold_response(q["answer"]), q["key"]) for q in questions
    ]
    result = score_predictions("vsi_bench", items)
    assert result["n"] == 5130
    assert result["overall"] == 100.0
    assert result["official_overall"] == 100.0
    assert len(result["official_categories"]) == 8
    assert len(result["categories"]) == 10


def test_other_benchmarks_have_plain_categories():
    items = [
        item("human", "A", "multiple_choice", "<answer>A</answer>"),
        item("human", "B", "multiple_choice", "<answer>A</answer>"),
        item("object", "C", "multiple_choice", "<answer>C</answer>"),
        item("simulated", "D", "multiple_choice", ""),
    ]
    result = score_predictions("tomato", items)
    assert result == {
        "benchmark": "tomato", "n": 4, "overall": 50.0,
        "categories": {"human": 50.0, "object": 100.0, "simulated": 0.0},
    }
    lvbench = score_predictions("lvbench", [item(None, "A", "multiple_choice", "<answer>A</answer>")])
    assert lvbench["categories"] == {} and lvbench["overall"] == 100.0


def test_score_predictions_rejects_bad_input():
    with pytest.raises(ValueError, match="no predictions"):
        score_predictions("tomato", [])
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        score_predictions("nope", [item(None, "A", "multiple_choice", "")])
    with pytest.raises(ValueError, match="not VSI-Bench categories: object_rel_direction"):
        score_predictions("vsi_bench", [item("object_rel_direction", "A", "multiple_choice", "")])


def test_read_our_format(tmp_path):
    records = [
        item("human", "A", "multiple_choice", "<answer>A</answer>", key="0621-00#8") | {"extra": 1},
        item(None, "2", "numeric", "<answer>2</answer>", key="q2"),
    ]
    path = write_jsonl(tmp_path / "preds.jsonl", records)
    assert read_predictions(path, "tomato") == [
        item("human", "A", "multiple_choice", "<answer>A</answer>", key="0621-00#8"),
        item(None, "2", "numeric", "<answer>2</answer>", key="q2"),
    ]


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"answer_type": "yes_no"}, "answer_type", "expected one of multiple_choice, numeric, math, got 'yes_no'"),
        ({"answer": "AB"}, "answer", "must be one letter A-J, got 'AB'"),
        ({"answer_type": "numeric", "answer": "two"}, "answer", "must be a number, got 'two'"),
        ({"response": None}, "response", "expected a string, got NoneType"),
        ({"category": 3}, "category", "expected a string or null"),
    ],
)
def test_our_format_bad_fields(tmp_path, change, field, message):
    good = item("human", "A", "multiple_choice", "<answer>A</answer>", key="a")
    path = write_jsonl(tmp_path / "preds.jsonl", [good, good | {"key": "b"} | change])
    with pytest.raises(ValueError) as err:
        read_predictions(path, "tomato")
    assert str(err.value).startswith(f"{path}, line 2, field '{field}': ")
    assert message in str(err.value)


def test_our_format_missing_field_bad_json_and_duplicates(tmp_path):
    good = item("human", "A", "multiple_choice", "<answer>A</answer>", key="a")
    missing = {k: v for k, v in good.items() if k != "response"}
    path = write_jsonl(tmp_path / "missing.jsonl", [good, missing])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2, field 'response': missing required field")):
        read_predictions(path, "tomato")
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(good) + "\n\n{not json\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: malformed JSON")):
        read_predictions(str(path), "tomato")
    path = write_jsonl(tmp_path / "dup.jsonl", [good, good])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2, field 'key': duplicate prediction for key 'a'")):
        read_predictions(path, "tomato")


def test_our_format_checked_against_questions(tmp_path):
    questions = load_benchmark("tomato", str(DATA / "tomato.json"))
    records = [item(q["category"], q["answer"], q["answer_type"], "", q["key"]) for q in questions]
    questions_path = str(DATA / "tomato.json")
    path = write_jsonl(tmp_path / "all.jsonl", records)
    assert len(read_predictions(path, "tomato", questions_path)) == 28
    path = write_jsonl(tmp_path / "partial.jsonl", records[:-3])
    with pytest.raises(ValueError, match=re.escape(f"{path}: 3 of 28 questions of {questions_path} have no prediction")):
        read_predictions(path, "tomato", questions_path)
    path = write_jsonl(tmp_path / "stale.jsonl", records[:1] + [records[1] | {"answer": "F"}] + records[2:])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2, field 'answer': 'F' differs from")):
        read_predictions(path, "tomato", questions_path)
    path = write_jsonl(tmp_path / "unknown.jsonl", records + [records[0] | {"key": "0621-00"}])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 29, field 'key': key '0621-00' is not a question")):
        read_predictions(path, "tomato", questions_path)


def test_read_authors_format_derives_type_category_and_keys(tmp_path):
    questions = load_benchmark("tomato", str(DATA / "tomato.json"))
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(authors_format(questions, [gold_response(q["answer"]) for q in questions])))
    items = read_predictions(str(path), "tomato")
    assert [i["key"] for i in items] == [q["key"] for q in questions]
    assert [(i["answer_type"], i["category"]) for i in items] == [(q["answer_type"], q["category"]) for q in questions]
    assert score_predictions("tomato", items)["overall"] == 100.0


def test_authors_format_reordered_matches_question_keys(tmp_path):
    questions_path = str(DATA / "tomato.json")
    questions = load_benchmark("tomato", questions_path)
    reordered = list(reversed(questions))
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(authors_format(reordered, [""] * len(reordered))))
    items = read_predictions(str(path), "tomato", questions_path)
    assert [i["key"] for i in items] == [q["key"] for q in reordered]
    assert items[0]["key"] == "0621-01#27"


def test_authors_format_numeric_ground_truth_as_number(tmp_path):
    question = load_benchmark("vsi_bench", str(DATA / "vsi_bench.json"))[0]
    path = tmp_path / "authors.json"
    prediction = {"question": question["raw"], "ground_truth": 2.0, "model_output": "<answer>2</answer>"}
    path.write_text(json.dumps([prediction]))
    [loaded] = read_predictions(str(path), "vsi_bench")
    assert (loaded["key"], loaded["answer"], loaded["answer_type"]) == ("vsi_bench_78", "2", "numeric")


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"ground_truth": "B"}, "ground_truth", "ground_truth 'B' disagrees with question.answer 'A'"),
        ({"model_output": ["<answer>D</answer>"]}, "model_output", "expected a string, got list"),
        ({"question": {"question_id": "0215-06"}}, "question.video_path", "missing required field"),
        ({"question": "0215-06"}, "question", "expected a JSON object"),
    ],
)
def test_authors_format_errors(tmp_path, change, field, message):
    questions = load_benchmark("tomato", str(DATA / "tomato.json"))[:2]
    records = authors_format(questions, ["", ""])
    records[1] = records[1] | change
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError) as err:
        read_predictions(str(path), "tomato")
    assert str(err.value).startswith(f"{path}, record index 1, field '{field}': ")
    assert message in str(err.value)


def test_authors_format_missing_field(tmp_path):
    path = tmp_path / "authors.json"
    path.write_text(json.dumps([{"question": {}, "ground_truth": "A"}]))
    with pytest.raises(ValueError, match=re.escape(f"{path}, record index 0, field 'model_output': missing required")):
        read_predictions(str(path), "tomato")


def test_cli_scores_authors_format(tmp_path):
    questions = load_benchmark("vsi_bench", str(DATA / "vsi_bench.json"))
    categories = ("object_counting", "object_rel_direction_hard")
    picked = [next(q for q in questions if q["category"] == c) for c in categories]
    assert picked[0]["answer"] == "2" and picked[1]["answer"] == "C"
    predictions = tmp_path / "authors.json"
    responses = ["<think>..</think><answer>$2.2$</answer>", "<answer>C. front-right</answer>"]
    predictions.write_text(json.dumps(authors_format(picked, responses)))
    output = tmp_path / "out" / "score.json"
    proc = run_score("--benchmark", "vsi_bench", "--predictions", str(predictions), "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(output.read_text())
    assert result["n"] == 2
    assert result["overall"] == pytest.approx(45.0)
    assert result["categories"] == pytest.approx({"object_counting": 90.0, "object_rel_direction_hard": 0.0})
    assert result["official_overall"] == pytest.approx(45.0)
    assert "overall" in proc.stdout and "45.00" in proc.stdout
    assert [p.name for p in output.parent.iterdir()] == ["score.json"]


def test_cli_scores_our_format_with_full_precision(tmp_path):
    records = [
        item("human", "A", "multiple_choice", "<answer>A</answer>", key="a"),
        item("human", "B", "multiple_choice", "<answer>$B$</answer>", key="b"),
        item("object", "C", "multiple_choice", "<answer>\\boxed{C}</answer>", key="c"),
    ]
    predictions = write_jsonl(tmp_path / "preds.jsonl", records)
    output = tmp_path / "score.json"
    proc = run_score("--benchmark", "tomato", "--predictions", predictions, "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(output.read_text())
    assert result == {
        "benchmark": "tomato", "n": 3, "overall": 2 / 3 * 100,
        "categories": {"human": 100.0, "object": 0.0},
    }
    assert "66.67" in proc.stdout and "66.666" not in proc.stdout


def test_cli_reports_bad_input_without_traceback(tmp_path):
    predictions = write_jsonl(tmp_path / "preds.jsonl", [{"key": "a"}])
    output = tmp_path / "score.json"
    proc = run_score("--benchmark", "tomato", "--predictions", predictions, "--output", str(output))
    assert proc.returncode != 0
    assert f"{predictions}, line 1, field 'answer': missing required field" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not output.exists()
