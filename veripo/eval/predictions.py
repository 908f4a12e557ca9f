"""Benchmark generation, resumable: one prediction line per question, appended as each batch finishes.

Predictions accumulate in a partial file next to the final one. A killed run leaves at most one
partial last line; a rerun drops it, skips every question already answered (by its unique key) and
continues, so no question is duplicated or lost. The partial file is only resumed when it was written
with the same checkpoint, question file, backend and generation settings (a ``.meta.json`` beside it);
otherwise it is discarded (one line naming what changed), so a changed setting never mixes two runs
in one file. The question file and the media it names count by content (sha256), not size and mtime: a
question edited to the same size, its mtime set back, is another question.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

from veripo.errors import InputError
from veripo.jsonio import read_json, write_json

log = logging.getLogger(__name__)


def partial_path(out_path: str) -> str:
    """Where the predictions of ``out_path`` accumulate until every question is answered."""
    return str(Path(out_path).with_suffix("")) + ".partial.jsonl"


def meta_path(partial: str) -> str:
    return partial + ".meta.json"


def file_stamp(path: str) -> list:
    """Cheap identity of a file or checkpoint directory: names, sizes and mtimes (no hashing)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"))
    elif p.is_file():
        files = [p]
    else:
        return [str(path)]  # a hub id: the name is all we have
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def resume_or_reset(partial: str, fingerprint: dict) -> bool:
    """Keep ``partial`` if it was written under ``fingerprint``, else delete it; True when kept."""
    fingerprint = json.loads(json.dumps(fingerprint))
    meta = meta_path(partial)
    if os.path.exists(partial):
        saved = read_json(meta) if os.path.exists(meta) else {}
        if saved == fingerprint:
            return True
        log.warning("discarding %s and starting over: written with another %s", partial, _changed(saved, fingerprint))
        os.remove(partial)
    write_json(meta, fingerprint)
    return False


def _changed(saved, now: dict) -> str:
    """What differs between two fingerprints, for the discard line: the keys, and the media files."""
    if not isinstance(saved, dict):
        saved = {}
    keys = sorted(k for k in set(saved) | set(now) if k != "media_files" and saved.get(k) != now.get(k))
    old_m, new_m = saved.get("media_files") or {}, now.get("media_files") or {}
    files = sorted(p for p in set(old_m) | set(new_m) if old_m.get(p) != new_m.get(p))
    if files:
        keys.append("media " + ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else ""))
    return ", ".join(keys) or "fingerprint"


def done_keys(pred_path: str) -> set[str]:
    """Keys already answered; a trailing partial line (a kill mid-write) is cut off the file."""
    if not os.path.exists(pred_path):
        return set()
    with open(pred_path, "rb") as fh:
        data = fh.read()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(pred_path, "r+b") as fh:
            fh.truncate(end)
    keys = set()
    for i, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
                raise InputError(pred_path, "not a prediction line (delete the file to start over)", line=i) from None
    return keys


def prediction_record(question: dict, generation) -> dict:
    return {"key": question["key"], "question_id": question["question_id"], "answer": question["answer"],
            "answer_type": question["answer_type"], "category": question["category"], "response": generation.text,
            "num_tokens": generation.num_tokens, "truncated": generation.truncated}


def generate_predictions(backend, questions: list[dict], out_path: str, batch_size: int = 1,
                         progress: Callable | None = None) -> int:
    """Answer every question not yet in ``out_path``, ``batch_size`` per backend call; returns how many
    were generated now. Lines are flushed and fsynced after every batch."""
    done = done_keys(out_path)
    todo = [q for q in questions if q["key"] not in done]
    bar = progress(total=len(questions), initial=len(questions) - len(todo), desc="eval") if progress else None
    with open(out_path, "a", encoding="utf-8") as fh:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            generations = backend.generate(chunk)
            if len(generations) != len(chunk):
                raise RuntimeError(f"backend returned {len(generations)} answers for {len(chunk)} questions")
            fh.write("".join(json.dumps(prediction_record(q, g), ensure_ascii=False) + "\n"
                             for q, g in zip(chunk, generations)))
            fh.flush()
            os.fsync(fh.fileno())
            if bar:
                bar.update(len(chunk))
    if bar:
        bar.close()
    return len(todo)
