"""Training query files (JSONL): validation with file/line/field errors and media path resolution.

Fields: ``id`` (unique; a string, or an integer read as its decimal string, so ``1`` and ``"1"`` are
the same id), ``question`` (at most ``max_question_chars`` characters), ``answer``, ``answer_type`` (one
of answers.ANSWER_TYPES), optional ``options``, ``video`` or ``image`` (relative to the JSONL's folder,
or absolute).
"""
from __future__ import annotations

import json
import math
import os

from veripo.answers import ANSWER_TYPES
from veripo.errors import InputError
from veripo.jsonio import read_jsonl
from veripo.stage_config import MAX_QUESTION_CHARS

REQUIRED = ("id", "question", "answer", "answer_type")
CHOICE_LETTERS = "ABCDEFGHIJ"


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _answer_problem(rec: dict) -> str | None:
    """Why the gold answer cannot be scored as its answer_type, or None. Checked at load: the reward
    would otherwise fail (or score everything 0) only when training reaches the record."""
    answer, kind = rec["answer"], rec["answer_type"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return f"expected a string or number, got {_shown(answer)}"
    if isinstance(answer, float) and not math.isfinite(answer):
        return f"expected a finite number, got {answer}"
    if kind == "multiple_choice":
        if not isinstance(answer, str) or len(answer) != 1 or answer not in CHOICE_LETTERS:
            return f"a multiple_choice answer is one letter A-J, got {_shown(answer)}"
        if rec.get("options") is not None:
            # options are listed in letter order, whatever their labels look like ("A. x", "(A) x", "x")
            offered = CHOICE_LETTERS[:len(rec["options"])]
            if answer not in offered:
                return (f"answer {answer!r} is not one of the offered options "
                        f"({offered[0] + '-' + offered[-1] if offered else 'none'})")
    elif kind == "numeric":
        try:
            value = float(answer)
        except (ValueError, OverflowError):
            return f"a numeric answer must parse as a number, got {_shown(answer)}"
        if not math.isfinite(value):
            return f"a numeric answer must be a finite number, got {_shown(answer)}"
    elif not str(answer).strip():
        return "a math answer must not be empty"
    return None


def load_queries(path: str, check_media: bool = True, max_question_chars: int = MAX_QUESTION_CHARS) -> list[dict]:
    """Records with media paths rewritten relative to the working directory (the run directory) and ids
    as strings (a later stage sorts and joins on them)."""
    records = read_jsonl(path, REQUIRED)
    if not records:
        raise InputError(path, "no queries: a GRPO stage on an empty file would train on nothing")
    base = os.path.dirname(path)
    seen: dict = {}
    for rec in records:
        line = rec["_line"]
        if isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int)):
            raise InputError(path, f"expected a string or integer, got {_shown(rec['id'])}", line=line,
                             field="id")
        rec["id"] = str(rec["id"])
        if not isinstance(rec["question"], str):
            raise InputError(path, f"expected a string, got {_shown(rec['question'])}", line=line,
                             field="question")
        if len(rec["question"]) > max_question_chars:
            raise InputError(path, f"{len(rec['question'])} characters, more than data.max_question_chars "
                             f"({max_question_chars})", line=line, field="question")
        if rec["answer_type"] not in ANSWER_TYPES:
            raise InputError(path, f"unknown answer type {rec['answer_type']!r}, expected one of "
                             f"{', '.join(ANSWER_TYPES)}", line=line, field="answer_type")
        if rec.get("options") is not None and not isinstance(rec["options"], list):
            raise InputError(path, f"expected a list or null, got {_shown(rec['options'])}", line=line,
                             field="options")
        problem = _answer_problem(rec)
        if problem:
            raise InputError(path, problem, line=line, field="answer")
        if rec["id"] in seen:
            raise InputError(path, f"duplicate id {rec['id']!r} (first on line {seen[rec['id']]})", line=line, field="id")
        seen[rec["id"]] = line
        for key in ("video", "image"):
            if rec.get(key):
                if not isinstance(rec[key], str):
                    raise InputError(path, "expected a path string", line=line, field=key)
                resolved = rec[key] if os.path.isabs(rec[key]) else os.path.normpath(os.path.join(base, rec[key]))
                if check_media and not os.path.exists(resolved):
                    raise InputError(path, f"{key} file not found: {resolved}", line=line, field=key)
                if check_media and not os.path.isfile(resolved):
                    # up front: hashing or decoding a FIFO would block until something writes to it
                    raise InputError(path, f"{key} is not a regular file (a directory, FIFO or device): "
                                     f"{resolved}", line=line, field=key)
                rec[key] = resolved
        rec["_source"] = f"{path}, line {line}"
    return records
