"""Benchmark scores from model predictions: per-question VerIPO scoring, then per-category means.

Predictions come in two formats: ours (JSONL, one object per question, written by evaluation) and
the VerIPO authors' (a JSON list of {question, ground_truth, model_output}), so published
prediction dumps can be re-scored with the same code.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Any, Collection, Iterable

from veripo.answers import ANSWER_TYPES, is_choice_answer, score_response
from veripo.eval import bootstrap
from veripo.eval.benchmarks import (
    VSI_CATEGORIES,
    VSI_REL_DIRECTION_PARTS,
    category_fits,
    check_benchmark,
    load_benchmark,
    normalize_record,
    record_keys,
)
from veripo.errors import InputError
from veripo.jsonio import iter_jsonl, read_json, require_regular_file

PREDICTION_FIELDS = ("key", "answer", "answer_type", "category", "response")
AUTHORS_FIELDS = ("question", "ground_truth", "model_output")


def score_predictions(benchmark: str, items: list[dict], intervals: bool = True) -> dict:
    """Overall and per-category scores (x100, unrounded) of scored prediction items.

    Each item needs answer, answer_type, category (None: counted in overall only) and response.
    For vsi_bench also the official aggregation: object_rel_direction is the mean of its
    easy/medium/hard parts and official_overall the unweighted mean of the 8 categories (of the
    ones present, when scoring a subset). With ``intervals`` each aggregate gets its 95% bootstrap
    interval (veripo/eval/bootstrap.py).
    """
    check_benchmark(benchmark)
    if not items:
        raise ValueError(f"no predictions to score for {benchmark}")
    scores = [score_response(item["response"], item["answer"], item["answer_type"]) for item in items]
    by_category: dict[str, list[float]] = collections.defaultdict(list)
    for item, score in zip(items, scores):
        if item["category"] is not None:
            by_category[item["category"]].append(score)
    result: dict[str, Any] = {
        "benchmark": benchmark,
        "n": len(items),
        "overall": _percent(scores),
        "categories": {category: _percent(by_category[category]) for category in sorted(by_category)},
    }
    if benchmark == "vsi_bench":
        official = _vsi_official_categories(result["categories"])
        result["official_categories"] = official
        result["official_overall"] = _mean(official.values())
    if intervals:
        categories = [item["category"] for item in items]
        result["ci95"] = bootstrap.score_interval(scores, categories, bootstrap.mean_aggregate)
        if benchmark == "vsi_bench":
            result["official_ci95"] = bootstrap.score_interval(
                scores, categories, bootstrap.category_mean_aggregate(categories, _vsi_official_overall_arrays))
    return result


def paired_score_difference(items: list[dict], baseline: list[dict]) -> dict:
    """overall(items) - overall(baseline) on the questions both answered, with its 95% paired
    bootstrap interval (the same questions resampled for both); ``n`` questions in common."""
    theirs = {item["key"]: item for item in baseline}
    common = [item for item in items if item["key"] in theirs]
    if not common:
        raise ValueError("paired difference: the two prediction sets share no question")
    ours = [score_response(i["response"], i["answer"], i["answer_type"]) for i in common]
    base = [score_response(theirs[i["key"]]["response"], i["answer"], i["answer_type"]) for i in common]
    paired = bootstrap.paired_difference(ours, base, [i["category"] for i in common], bootstrap.mean_aggregate)
    return {"n": len(common), **paired}


def _vsi_official_overall_arrays(means: dict):
    """official_overall per bootstrap resample, from per-resample category means (as
    _vsi_official_categories, on arrays)."""
    official = []
    for category in VSI_CATEGORIES:
        if category == "object_rel_direction":
            parts = [means[part] for part in VSI_REL_DIRECTION_PARTS if part in means]
            if parts:
                official.append(sum(parts) / len(parts))
        elif category in means:
            official.append(means[category])
    return sum(official) / len(official)


def read_predictions(
    path: str | os.PathLike, benchmark: str, questions_path: str | os.PathLike | None = None,
    skipped: Collection[str] = (),
) -> list[dict]:
    """Prediction items {key, answer, answer_type, category, response} from either format.

    The authors' format is recognised by its top-level JSON list. With ``questions_path`` (the
    benchmark's question file) every prediction must match one question with the same gold
    answer, and every question must have exactly one prediction, except the ``skipped`` keys (media
    missing), which must have none: a partial or stale file fails instead of silently scoring a
    different question set.
    """
    check_benchmark(benchmark)
    require_regular_file(path)
    # bytes: a byte that is not UTF-8 is reported by the reader below, with its line
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    questions = load_benchmark(benchmark, questions_path) if questions_path is not None else None
    if head.startswith(b"["):
        located = _read_authors_format(path, benchmark, questions)
    else:
        located = _read_our_format(path)
    seen: dict[str, str] = {}
    for where, item in located:
        if item["key"] in seen:
            raise InputError(where, f"duplicate prediction for key {item['key']!r} (first at {seen[item['key']]})",
                             field="key")
        seen[item["key"]] = where
    if questions is not None:
        _check_against_questions(path, located, questions, questions_path, set(skipped))
    return [item for _, item in located]


def check_predictions_benchmark(path: str | os.PathLike, benchmark: str, items: list[dict]) -> None:
    """InputError naming ``path`` when its predictions are another benchmark's: the evaluation record beside
    it (``<bench>.run.json``) names another, or a category is one ``benchmark``'s questions cannot have.
    Scoring them anyway would give a number for the wrong benchmark, silently."""
    record_path = str(path).removesuffix(".predictions.jsonl") + ".run.json"
    if str(path).endswith(".predictions.jsonl") and os.path.isfile(record_path):
        record = read_json(record_path)
        found = record.get("benchmark") if isinstance(record, dict) else None
        if found not in (None, benchmark):
            raise InputError(path, f"predictions of {found} ({record_path} says so), not of {benchmark}")
    foreign = sorted({str(item["category"]) for item in items if not category_fits(benchmark, item["category"])})
    if foreign:
        # the benchmarks with a closed category list that has every category found
        fitting = [name for name in ("vsi_bench", "video_mme", "tomato", "lvbench") if name != benchmark
                   and all(category_fits(name, item["category"]) for item in items)]
        but = f" but {' or '.join(fitting)}'s" if fitting else ""
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise InputError(path, f"categories {shown} are not {benchmark}'s{but}: predictions of another benchmark")


def _read_our_format(path: str | os.PathLike) -> list[tuple[str, dict]]:
    located = []
    for rec in iter_jsonl(path, required=PREDICTION_FIELDS):
        where = f"{path}, line {rec['_line']}"

        def fail(field: str, message: str) -> InputError:
            return InputError(where, message, field=field)

        for field in ("key", "response"):
            if not isinstance(rec[field], str):
                raise fail(field, f"expected a string, got {type(rec[field]).__name__}")
        if rec["answer_type"] not in ANSWER_TYPES:
            raise fail("answer_type", f"expected one of {', '.join(ANSWER_TYPES)}, got {rec['answer_type']!r}")
        if rec["category"] is not None and not isinstance(rec["category"], str):
            raise fail("category", f"expected a string or null, got {type(rec['category']).__name__}")
        answer = rec["answer"]
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise fail("answer", f"expected a string or number, got {answer!r}")
        answer = str(answer).strip()
        problem = _gold_problem(answer, rec["answer_type"])
        if problem:
            raise fail("answer", problem)
        item = {field: rec[field] for field in PREDICTION_FIELDS}
        item["answer"] = answer
        located.append((where, item))
    return located


def _read_authors_format(
    path: str | os.PathLike, benchmark: str, questions: list[dict] | None
) -> list[tuple[str, dict]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of predictions, got {type(data).__name__}")
    located = []
    for index, rec in enumerate(data):
        where = f"{path}, record index {index}"
        if not isinstance(rec, dict):
            raise InputError(where, f"expected a JSON object, got {type(rec).__name__}")
        for field in AUTHORS_FIELDS:
            if field not in rec:
                raise InputError(where, "missing required field", field=field)
        if not isinstance(rec["model_output"], str):
            kind = type(rec["model_output"]).__name__
            raise InputError(where, f"expected a string, got {kind}", field="model_output")
        question = normalize_record(benchmark, rec["question"], path, index, field_prefix="question.")
        if not _same_gold(rec["ground_truth"], question["answer"], question["answer_type"]):
            raise InputError(where, f"ground_truth {rec['ground_truth']!r} disagrees with question.answer "
                             f"{question['answer']!r}", field="ground_truth")
        item = {
            "key": None,
            "answer": question["answer"],
            "answer_type": question["answer_type"],
            "category": question["category"],
            "response": rec["model_output"],
        }
        located.append((where, item, question))
    if questions is None:
        keys = record_keys([question["question_id"] for _, _, question in located])
    else:
        keys = _match_question_keys(located, questions)
    for (_, item, _), key in zip(located, keys):
        item["key"] = key
    return [(where, item) for where, item, _ in located]


def _match_question_keys(located: list[tuple[str, dict, dict]], questions: list[dict]) -> list[str]:
    # The authors' files carry no key and may be reordered, so a prediction is matched to the
    # question with the same id, video and text; TOMATO's repeated ids differ in their text.
    available: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
    for question in questions:
        available[_identity(question)].append(question["key"])
    keys = []
    for where, _, question in located:
        candidates = available.get(_identity(question))
        if not candidates:
            raise InputError(where, "no unmatched question in the question file has this question_id, "
                             "video_path, question and processed_question", field="question")
        keys.append(candidates.popleft())
    return keys


def _identity(question: dict) -> tuple[str, str, str, str]:
    # TOMATO repeats question_id, video and question with other options (and answers): the options
    # in processed_question tell those records apart.
    raw = question["raw"]
    return question["question_id"], raw["video_path"], raw["question"], str(raw.get("processed_question", ""))


def _check_against_questions(
    path: str | os.PathLike, located: list[tuple[str, dict]], questions: list[dict],
    questions_path: str | os.PathLike, skipped: set[str],
) -> None:
    by_key = {question["key"]: question for question in questions}
    unknown = sorted(skipped - set(by_key))
    if unknown:
        raise ValueError(f"skipped keys are not questions of {questions_path}: {', '.join(unknown[:5])}")
    for where, item in located:
        question = by_key.get(item["key"])
        if question is None:
            raise InputError(where, f"key {item['key']!r} is not a question of {questions_path}", field="key")
        if item["key"] in skipped:
            raise InputError(where, f"key {item['key']!r} was skipped (media missing) yet has a prediction",
                             field="key")
        for field in ("answer", "answer_type", "category"):
            if item[field] != question[field]:
                raise InputError(where, f"{item[field]!r} differs from {question[field]!r} in {questions_path}",
                                 field=field)
    predicted = {item["key"] for _, item in located}
    missing = [key for key in by_key if key not in predicted and key not in skipped]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(path, f"{len(missing)} of {len(questions) - len(skipped)} questions of {questions_path} "
                         f"have no prediction: {shown}")


def _gold_problem(answer: str, answer_type: str) -> str | None:
    if answer_type == "multiple_choice" and not is_choice_answer(answer):
        return f"a multiple_choice answer must be one letter A-J, got {answer!r}"
    if answer_type == "numeric":
        try:
            value = float(answer)
        except ValueError:
            return f"a numeric answer must be a number, got {answer!r}"
        if not math.isfinite(value):
            return f"a numeric answer must be a finite number, got {answer!r}"
    if not answer:
        return "empty answer"
    return None


def _same_gold(ground_truth: Any, answer: str, answer_type: str) -> bool:
    if str(ground_truth).strip() == answer:
        return True
    # Numeric golds may have been re-serialised as numbers (2 vs "2.0").
    if answer_type == "numeric" and isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        try:
            return float(ground_truth) == float(answer)
        except OverflowError:  # an integer past float's range: no finite gold equals it
            return False
    return False


def _vsi_official_categories(categories: dict[str, float]) -> dict[str, float]:
    # object_rel_direction is only ever derived from its parts, never a question's own category.
    known = (set(VSI_CATEGORIES) - {"object_rel_direction"}) | set(VSI_REL_DIRECTION_PARTS)
    unknown = sorted(set(categories) - known)
    if unknown:
        raise ValueError(f"not VSI-Bench categories: {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    official = {}
    for category in VSI_CATEGORIES:
        if category == "object_rel_direction":
            parts = [categories[part] for part in VSI_REL_DIRECTION_PARTS if part in categories]
            if parts:
                official[category] = _mean(parts)
        elif category in categories:
            official[category] = categories[category]
    if not official:
        raise ValueError("no VSI-Bench categories among the predictions; the official aggregation needs them")
    return official


def _percent(scores: list[float]) -> float:
    return _mean(scores) * 100


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values)
