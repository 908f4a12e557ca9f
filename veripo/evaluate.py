"""Benchmark generation, resumable: one prediction line per question, appended as it finishes.

A killed run leaves at most one partial last line; a rerun drops it, skips every question already
answered (by its unique key) and continues, so no question is duplicated or lost.
"""
from __future__ import annotations

import json
import os

import torch

from veripo import policy
from veripo.errors import InputError


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
            except (json.JSONDecodeError, KeyError):
                raise InputError(pred_path, "not a prediction line (delete the file to start over)", line=i) from None
    return keys


def missing_media(questions: list[dict], video_root: str) -> list[str]:
    return [os.path.join(video_root, q["video_path"]) for q in questions
            if not os.path.exists(os.path.join(video_root, q["video_path"]))]


def generate_predictions(model, processor, questions: list[dict], video_root: str, out_path: str, eval_cfg: dict,
                         templates: dict, progress=None, seed: int = 0) -> int:
    """Answer every question not yet in ``out_path``; returns how many were generated now."""
    done = done_keys(out_path)
    todo = [q for q in questions if q["key"] not in done]
    media = eval_cfg["media"]
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    bar = progress(total=len(questions), initial=len(questions) - len(todo), desc="eval") if progress else None
    with open(out_path, "a", encoding="utf-8") as fh:
        for q in todo:
            record = {"id": q["key"], "video": os.path.join(video_root, q["video_path"]), "question": q["question"],
                      "answer": q["answer"], "answer_type": q["answer_type"]}
            prompt = policy.encode_query(processor, record, templates, media, None, source=f"question {q['key']}")
            ro = policy.sample(model, prompt, 1, eval_cfg["max_new_tokens"], eval_cfg["temperature"], eval_cfg["top_p"],
                               eval_cfg["repetition_penalty"], generator=generator,
                               pad_id=processor.tokenizer.pad_token_id)
            text = policy.decode(processor, ro)[0]
            fh.write(json.dumps({"key": q["key"], "question_id": q["question_id"], "answer": q["answer"],
                                 "answer_type": q["answer_type"], "category": q["category"], "response": text,
                                 "num_tokens": int(ro.mask.sum()), "truncated": bool(ro.truncated[0])},
                                ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return len(todo)
