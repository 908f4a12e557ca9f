"""Before any generation: every question's video must exist and open, so a long run never dies at
question 4000 on a missing file. Opening a container and decoding its first frame is enough to
tell a readable video from a truncated or mislabelled one, and costs milliseconds per file.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass

from veripo.errors import InputError

SHOWN = 5  # paths listed in an error message


@dataclass(frozen=True)
class MediaProblem:
    key: str  # the question's key
    path: str  # the video (or "<inline image>")
    reason: str  # "missing" or "unreadable: ..."


def probe_video(path: str) -> str | None:
    """None when ``path`` has a video stream whose first frame decodes, else the reason."""
    import av

    if not os.path.isfile(path):
        return "missing"
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return "unreadable: no video stream"
            for _ in container.decode(container.streams.video[0]):
                return None
            return "unreadable: no frames"
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return f"unreadable: {exc}"


def _b64_image(data: str):
    from PIL import Image, UnidentifiedImageError

    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
            return im.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a base64-encoded image ({exc})") from None


def decode_inline_image(data: str, source: str):
    """A record's ``image`` field (base64, optionally a data: URL) as an RGB PIL image."""
    try:
        return _b64_image(data)
    except ValueError as exc:
        raise InputError(source, str(exc), field="image") from None


def image_problem(image: object) -> str | None:
    """None when a record has no inline image or it decodes, else the reason."""
    if image is None or image == "":
        return None
    if not isinstance(image, str):
        return f"unreadable: expected a base64 string, got {type(image).__name__}"
    try:
        _b64_image(image)
    except ValueError as exc:
        return f"unreadable: {exc}"
    return None


def find_media_problems(questions: list[dict], video_root: str) -> list[MediaProblem]:
    """Every question whose video is missing or unreadable, or whose inline image does not decode.

    A video shared by several questions (VSI-Bench, TOMATO) is probed once."""
    verdicts: dict[str, str | None] = {}
    problems = []
    for q in questions:
        path = os.path.join(video_root, q["video_path"])
        if path not in verdicts:
            verdicts[path] = probe_video(path)
        if verdicts[path] is not None:
            problems.append(MediaProblem(q["key"], path, verdicts[path]))
        reason = image_problem(q["raw"].get("image"))
        if reason:
            problems.append(MediaProblem(q["key"], "<inline image>", reason))
    return problems


def screen_questions(questions: list[dict], video_root: str, question_file: str, benchmark: str,
                     skip: bool) -> tuple[list[dict], list[MediaProblem]]:
    """(questions to answer, problems). Problems stop the run, naming the question file, unless
    ``skip``: then the affected questions are left out and reported."""
    problems = find_media_problems(questions, video_root)
    if problems and not skip:
        first: dict[str, str] = {}
        for p in problems:
            first.setdefault(p.path, p.reason)
        shown = "; ".join(f"{path} ({reason})" for path, reason in list(first.items())[:SHOWN])
        more = f"; ... {len(first) - SHOWN} more" if len(first) > SHOWN else ""
        n_questions = len({p.key for p in problems})
        raise InputError(question_file, f"{n_questions} of {len(questions)} questions have a missing or unreadable "
                         f"video or image ({len(first)} files) under {video_root}: {shown}{more}. Fix the files "
                         f"or set eval.benchmarks.{benchmark}.skip_missing_videos: true to skip those questions",
                         field="video_path")
    bad = {p.key for p in problems}
    return [q for q in questions if q["key"] not in bad], problems
