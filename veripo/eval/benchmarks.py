"""Loaders for the evaluation question files (the VerIPO authors' JSON format, one list per benchmark).

Every benchmark is normalised to the same record so generation and scoring never branch on the
file format; only the per-benchmark category rules differ (see docs/BENCHMARKS.md).
"""
from __future__ import annotations

import collections
import math
import os
import re
from pathlib import PurePosixPath
from typing import Any

from veripo.answers import is_choice_answer
from veripo.errors import InputError
from veripo.jsonio import read_json
from veripo.prompts import strip_mc_suffix

BENCHMARKS = ("vsi_bench", "video_mme", "lvbench", "tomato", "mmvu", "video_mmmu")

VSI_CATEGORIES = (
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
    "object_abs_distance",
    "object_rel_distance",
    "obj_appearance_order",
    "route_planning",
    "object_rel_direction",
)
VSI_REL_DIRECTION_PARTS = tuple(f"object_rel_direction_{level}" for level in ("easy", "medium", "hard"))

class FieldError(ValueError):
    """A record that fits no rule; ``field`` names the offending field so callers can locate it."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


_REQUIRED_FIELDS = ("question_id", "video_path", "question", "answer")
_TOMATO_CATEGORIES = ("human", "object", "simulated")
_VIDEO_MME_ID = re.compile(r"(\d+)-\d+")
_VSI_PREFIX_RULES = (
    ("How many", "object_counting"),
    ("What is the length of the longest dimension", "object_size_estimation"),
    ("What is the size of this room", "room_size_estimation"),
)
_VSI_DIRECTION_RULES = (
    ("left or the right", "object_rel_direction_easy"),
    ("left, right, or back", "object_rel_direction_medium"),
    ("front-left", "object_rel_direction_hard"),
)


def load_benchmark(name: str, path: str | os.PathLike) -> list[dict]:
    """Normalised records of one benchmark question file, in file order.

    Each record: key (unique), question_id, video_path, question (prompt text without the
    option-letter suffix), answer (str), answer_type, category (str or None), options, raw.
    """
    check_benchmark(name)
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of question records, got {type(data).__name__}")
    records = [normalize_record(name, rec, path, index) for index, rec in enumerate(data)]
    for rec, key in zip(records, record_keys([rec["question_id"] for rec in records])):
        rec["key"] = key
    keys = collections.Counter(rec["key"] for rec in records)
    clashes = sorted(key for key, n in keys.items() if n > 1)
    if clashes:
        raise InputError(path, f"question keys are not unique: {', '.join(clashes[:5])}", field="question_id")
    return records


def record_keys(question_ids: list[str]) -> list[str]:
    """One key per record: the question_id, plus "#<position>" where the id repeats (TOMATO)."""
    counts = collections.Counter(question_ids)
    return [qid if counts[qid] == 1 else f"{qid}#{pos}" for pos, qid in enumerate(question_ids)]


def normalize_record(name: str, record: Any, path: str | os.PathLike, index: int, field_prefix: str = "") -> dict:
    """Validate one question record and derive its prompt text, answer type and category (no key).

    ``index`` and ``field_prefix`` only locate errors: the record's position in ``path`` and the
    path of the record inside an enclosing object (the authors' prediction files nest it).
    """
    check_benchmark(name)
    where = f"{path}, record index {index}"
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise InputError(where, f"expected a JSON object, got {kind}", field=field_prefix.rstrip(".") or None)

    def fail(field: str, message: str) -> InputError:
        return InputError(where, message, field=field_prefix + field)

    for field in _REQUIRED_FIELDS:
        if field not in record:
            raise fail(field, "missing required field")
    question_id = record["question_id"]
    if isinstance(question_id, bool) or not isinstance(question_id, (str, int)):
        raise fail("question_id", f"expected a string, got {question_id!r}")
    for field in ("video_path", "question"):
        if not isinstance(record[field], str):
            raise fail(field, f"expected a string, got {type(record[field]).__name__}")
    processed = record.get("processed_question")
    if processed is not None and not isinstance(processed, str):
        raise fail("processed_question", f"expected a string or null, got {type(processed).__name__}")
    options = record.get("options")
    if options is not None and not isinstance(options, list):
        raise fail("options", f"expected a list, got {type(options).__name__}")
    answer = record["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise fail("answer", f"expected a string or number, got {answer!r}")
    answer = str(answer).strip()
    try:
        answer_type = answer_type_for(name, answer)
        category = category_for(name, record)
    except FieldError as exc:
        raise fail(exc.field, str(exc)) from None
    return {
        "question_id": str(question_id),
        "video_path": record["video_path"],
        "question": question_text(record),
        "answer": answer,
        "answer_type": answer_type,
        "category": category,
        "options": options,
        "raw": record,
    }


def question_text(record: dict) -> str:
    """The ``{Question}`` of the prompt: processed_question without the option-letter suffix."""
    text = record.get("processed_question")
    if text is None:
        text = record["question"]
    return strip_mc_suffix(text)


def answer_type_for(name: str, answer: str) -> str:
    """multiple_choice for an option letter; otherwise numeric (math for VideoMMMU); else FieldError."""
    if is_choice_answer(answer):
        return "multiple_choice"
    if name == "video_mmmu":
        if not answer:
            raise FieldError("empty answer", "answer")
        return "math"
    try:
        value = float(answer)
    except ValueError:
        raise FieldError(f"expected an option letter A-J or a number, got {answer!r}", "answer") from None
    if not math.isfinite(value):
        # NaN or an overflow to inf would score every prediction 0 (or NaN) without a word
        raise FieldError(f"expected a finite number, got {answer!r}", "answer")
    return "numeric"


def category_for(name: str, record: dict) -> str | None:
    """Per-benchmark category (None where the benchmark has none); FieldError when no rule fits."""
    if name == "vsi_bench":
        return _vsi_category(record)
    if name == "video_mme":
        return _video_mme_category(str(record["question_id"]))
    if name in ("tomato", "mmvu"):
        folder = PurePosixPath(record["video_path"]).parent.name
        if name == "tomato" and folder not in _TOMATO_CATEGORIES:
            expected = "/".join(_TOMATO_CATEGORIES)
            raise FieldError(f"expected a video under one of {expected}/, got folder {folder!r}", "video_path")
        if not folder:
            raise FieldError("expected the video inside a subject folder", "video_path")
        return folder
    if name == "video_mmmu":
        category = record.get("category")
        return category if isinstance(category, str) else None
    return None


def category_fits(name: str, category: str | None) -> bool:
    """Whether a question of benchmark ``name`` can have ``category`` under ``category_for``'s rules."""
    if name == "vsi_bench":
        return category in (set(VSI_CATEGORIES) - {"object_rel_direction"}) | set(VSI_REL_DIRECTION_PARTS)
    if name == "video_mme":
        return category in ("short", "medium", "long")
    if name == "tomato":
        return category in _TOMATO_CATEGORIES
    if name == "mmvu":
        return bool(category)
    if name == "lvbench":
        return category is None
    return True  # video_mmmu: the record's own category, any or none


def _vsi_category(record: dict) -> str:
    question = record["question"]
    for prefix, category in _VSI_PREFIX_RULES:
        if question.startswith(prefix):
            return category
    if "Measuring from the closest point" in question:
        return "object_rel_distance" if record.get("options") else "object_abs_distance"
    if "What will be the first-time appearance order" in question:
        return "obj_appearance_order"
    if "You are a robot" in question:
        return "route_planning"
    if "If I am standing by" in question:
        for needle, category in _VSI_DIRECTION_RULES:
            if needle in question:
                return category
        raise FieldError("relative-direction question matches none of the easy/medium/hard patterns", "question")
    raise FieldError("question matches no VSI-Bench category rule", "question")


def _video_mme_category(question_id: str) -> str:
    match = _VIDEO_MME_ID.fullmatch(question_id)
    video_number = int(match.group(1)) if match else 0
    if 1 <= video_number <= 300:
        return "short"
    if 301 <= video_number <= 600:
        return "medium"
    if 601 <= video_number <= 900:
        return "long"
    raise FieldError(f"expected '<video 001-900>-<n>', got {question_id!r}", "question_id")


def check_benchmark(name: str) -> None:
    """Raise ValueError unless ``name`` is one of BENCHMARKS."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
