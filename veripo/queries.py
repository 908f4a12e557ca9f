"""Training query files (JSONL): validation with file/line/field errors and media path resolution.

Fields: ``id`` (unique), ``question``, ``answer``, ``answer_type`` (one of answers.ANSWER_TYPES),
optional ``options``, ``video`` or ``image`` (relative to the JSONL's folder, or absolute).
"""
from __future__ import annotations

import os

from veripo.answers import ANSWER_TYPES
from veripo.errors import InputError
from veripo.jsonio import read_jsonl

REQUIRED = ("id", "question", "answer", "answer_type")


def load_queries(path: str, check_media: bool = True) -> list[dict]:
    """Records with media paths rewritten relative to the working directory (the run directory)."""
    records = read_jsonl(path, REQUIRED)
    base = os.path.dirname(path)
    seen: dict = {}
    for rec in records:
        line = rec["_line"]
        if rec["answer_type"] not in ANSWER_TYPES:
            raise InputError(path, f"unknown answer type {rec['answer_type']!r}, expected one of "
                             f"{', '.join(ANSWER_TYPES)}", line=line, field="answer_type")
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
                rec[key] = resolved
        rec["_source"] = f"{path}, line {line}"
    return records
