from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from veripo import jsonio

from veripo.data import synthetic_benchmarks
from veripo.eval.benchmarks import load_benchmark
from veripo.eval.scoring import read_predictions, score_predictions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_questions(tmp_path_factory):
    """``synthetic_questions(name)``: path of a synthetic question file in ``name``'s format
    (veripo.data.synthetic_benchmarks), so the scorer tests run without the real files."""
    root = tmp_path_factory.mktemp("synthetic_questions")
    sizes = {"tomato": 9, "vsi_bench": 4}

    def path(name: str) -> str:
        file = root / f"{name}.json"
        if not file.exists():
            jsonio.write_json(file, synthetic_benchmarks.write_benchmark(name, str(root), sizes[name], 5, 32, 4, 0.5))
        return str(file)

    return path


@pytest.fixture(params=["real", "synthetic"])
def questions_file(request, synthetic_questions):
    """``questions_file(name)``: the real question file (skips when absent), then a synthetic one."""
    if request.param == "real":
        real_benchmark = request.getfixturevalue("real_benchmark")

        def path(name: str) -> str:
            return str(real_benchmark(name))
    else:
        def path(name: str) -> str:
            return synthetic_questions(name)
    path.kind = request.param
    return path


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


def gold_items(questions: list[dict]) -> list[dict]:
    return [item(q["category"], q["answer"], q["answer_type"], gold_response(q["answer"]), q["key"]) for q in questions]


def test_full_vsi_bench_gold_answers_score_100(real_benchmark):
    questions = load_benchmark("vsi_bench", real_benchmark("vsi_bench"))
    result = score_predictions("vsi_bench", gold_items(questions))
    assert result["n"] == 5130
    assert result["overall"] == 100.0
    assert result["official_overall"] == 100.0
    assert len(result["official_categories"]) == 8
    assert len(result["categories"]) == 10


def test_synthetic_vsi_bench_gold_answers_score_100(synthetic_questions):
    questions = load_benchmark("vsi_bench", synthetic_questions("vsi_bench"))
    result = score_predictions("vsi_bench", gold_items(questions))
    assert result["n"] == 4
    assert result["overall"] == result["official_overall"] == 100.0
    assert result["official_categories"] == {"object_counting": 100.0, "object_rel_direction": 100.0}
    assert result["categories"] == {"object_counting": 100.0, "object_rel_direction_easy": 100.0}


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
        # resampled within categories, only "human" varies: 0, 1 or 2 of its 2 right -> 25, 50, 75
        "ci95": [25.0, 75.0],
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


def test_our_format_checked_against_questions(tmp_path, questions_file):
    questions_path = questions_file("tomato")
    questions = load_benchmark("tomato", questions_path)
    records = [item(q["category"], q["answer"], q["answer_type"], "", q["key"]) for q in questions]
    n = len(questions)
    path = write_jsonl(tmp_path / "all.jsonl", records)
    assert len(read_predictions(path, "tomato", questions_path)) == n
    path = write_jsonl(tmp_path / "partial.jsonl", records[:-3])
    with pytest.raises(ValueError, match=re.escape(f"{path}: 3 of {n} questions of {questions_path} have no prediction")):
        read_predictions(path, "tomato", questions_path)
    stale = "F" if records[1]["answer"] != "F" else "G"
    path = write_jsonl(tmp_path / "stale.jsonl", records[:1] + [records[1] | {"answer": stale}] + records[2:])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2, field 'answer': '{stale}' differs from")):
        read_predictions(path, "tomato", questions_path)
    repeated = next(q["question_id"] for q in questions if q["key"] != q["question_id"])  # a TOMATO repeated id
    path = write_jsonl(tmp_path / "unknown.jsonl", records + [records[0] | {"key": repeated}])
    message = f"{path}, line {n + 1}, field 'key': key '{repeated}' is not a question"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_predictions(path, "tomato", questions_path)


def test_read_authors_format_derives_type_category_and_keys(tmp_path, questions_file):
    questions = load_benchmark("tomato", questions_file("tomato"))
    assert any("#" in q["key"] for q in questions)
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(authors_format(questions, [gold_response(q["answer"]) for q in questions])))
    items = read_predictions(str(path), "tomato")
    assert [i["key"] for i in items] == [q["key"] for q in questions]
    assert [(i["answer_type"], i["category"]) for i in items] == [(q["answer_type"], q["category"]) for q in questions]
    assert score_predictions("tomato", items)["overall"] == 100.0


def test_authors_format_reordered_matches_question_keys(tmp_path, questions_file):
    questions_path = questions_file("tomato")
    questions = load_benchmark("tomato", questions_path)
    reordered = list(reversed(questions))
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(authors_format(reordered, [""] * len(reordered))))
    items = read_predictions(str(path), "tomato", questions_path)
    assert [i["key"] for i in items] == [q["key"] for q in reordered]
    assert items[0]["key"] == questions[-1]["key"]
    # a repeated id's key carries its position in the question file, not in the prediction file
    last = len(items) - 1
    pos = next(i for i in range(last, -1, -1) if "#" in items[i]["key"])
    assert items[pos]["key"] == f"{reordered[pos]['question_id']}#{last - pos}" and pos != last - pos


def test_authors_format_numeric_ground_truth_as_number(tmp_path, questions_file):
    question = load_benchmark("vsi_bench", questions_file("vsi_bench"))[0]
    assert question["answer_type"] == "numeric" and "." not in question["answer"]
    path = tmp_path / "authors.json"
    answer = question["answer"]
    prediction = {"question": question["raw"], "ground_truth": float(answer), "model_output": f"<answer>{answer}</answer>"}
    path.write_text(json.dumps([prediction]))
    [loaded] = read_predictions(str(path), "vsi_bench")
    assert (loaded["key"], loaded["answer"], loaded["answer_type"]) == (question["key"], answer, "numeric")
    if questions_file.kind == "real":
        assert (loaded["key"], loaded["answer"]) == ("vsi_bench_78", "2")


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"ground_truth": "B"}, "ground_truth", "ground_truth 'B' disagrees with question.answer '{answer}'"),
        ({"model_output": ["<answer>D</answer>"]}, "model_output", "expected a string, got list"),
        ({"question": {"question_id": "0215-06"}}, "question.video_path", "missing required field"),
        ({"question": "0215-06"}, "question", "expected a JSON object"),
    ],
)
def test_authors_format_errors(tmp_path, questions_file, change, field, message):
    questions = load_benchmark("tomato", questions_file("tomato"))[:2]
    assert questions[1]["answer"] == ("A" if questions_file.kind == "real" else "G")  # not "B"
    message = message.format(answer=questions[1]["answer"])
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


def test_cli_scores_authors_format(tmp_path, real_benchmark):
    questions = load_benchmark("vsi_bench", real_benchmark("vsi_bench"))
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


def test_cli_scores_synthetic_authors_format(tmp_path, synthetic_questions):
    counting, direction = load_benchmark("vsi_bench", synthetic_questions("vsi_bench"))[:2]
    assert (counting["category"], direction["category"]) == ("object_counting", "object_rel_direction_easy")
    wrong = next(o for o in direction["options"] if not o.startswith(direction["answer"]))
    predictions = tmp_path / "authors.json"
    responses = [f"<think>..</think><answer>${counting['answer']}$</answer>", f"<answer>{wrong}</answer>"]
    predictions.write_text(json.dumps(authors_format([counting, direction], responses)))
    output = tmp_path / "score.json"
    proc = run_score("--benchmark", "vsi_bench", "--predictions", str(predictions), "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(output.read_text())
    assert (result["n"], result["overall"], result["official_overall"]) == (2, 50.0, 50.0)
    assert result["categories"] == {"object_counting": 100.0, "object_rel_direction_easy": 0.0}
    assert "50.00" in proc.stdout


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
        "ci95": [2 / 3 * 100, 2 / 3 * 100],  # one score per category: no resample differs
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
