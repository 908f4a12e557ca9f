"""Before any generation or training: every video and image must decode, so a long run never dies at
question 4000 (or in round 3) on a missing, truncated or mislabelled file.

A video is decoded exactly as the stage will decode it (the same function, the same sampling
settings), to its last frame: a file cut short or corrupt after its first frames opens and decodes
its start fine and only fails there, which a first-frame probe cannot see.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass

from veripo.media import decode as video
from veripo.media import frame_cache
from veripo.errors import InputError

SHOWN = 5  # paths listed in an error message
# The whole stream is decoded whatever the sampling, so any settings find a truncated or corrupt file;
# the stage's own settings (what callers pass) also check the very frames it keeps.
ANY_SAMPLING = {"fps": 1.0, "min_frames": 2, "max_frames": 2}


@dataclass(frozen=True)
class MediaProblem:
    key: str  # the question's key
    path: str  # the video (or "<inline image>")
    reason: str  # "missing" or "unreadable: ..."


def probe_video(path: str, media: dict | None = None) -> str | None:
    """None when ``path`` decodes to its end and yields the frames ``media`` samples, else the reason."""
    if not os.path.exists(path):
        return "missing"
    try:
        frame_cache.read_video(path, *video.sampling(media or ANY_SAMPLING),
                               cache_dir=(media or {}).get("frame_cache"),
                               max_bytes=(media or {}).get("frame_cache_max_bytes"))
    except video.UnreadableMedia as exc:
        return f"unreadable: {exc}"
    return None


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


def find_media_problems(questions: list[dict], video_root: str, media: dict | None = None) -> list[MediaProblem]:
    """Every question whose video is missing or unreadable at ``media``'s sampling settings, or whose
    inline image does not decode.

    A video shared by several questions (VSI-Bench, TOMATO) is probed once."""
    verdicts: dict[str, str | None] = {}
    problems = []
    for q in questions:
        path = os.path.join(video_root, q["video_path"])
        if path not in verdicts:
            verdicts[path] = probe_video(path, media)
        if verdicts[path] is not None:
            problems.append(MediaProblem(q["key"], path, verdicts[path]))
        reason = image_problem(q["raw"].get("image"))
        if reason:
            problems.append(MediaProblem(q["key"], "<inline image>", reason))
    return problems


def screen_questions(questions: list[dict], video_root: str, question_file: str, benchmark: str,
                     skip: bool, media: dict | None = None) -> tuple[list[dict], list[MediaProblem]]:
    """(questions to answer, problems). Problems stop the run, naming the question file, unless
    ``skip``: then the affected questions are left out and reported. ``media``: the benchmark's
    generation media settings, so the check decodes what generation will."""
    problems = find_media_problems(questions, video_root, media)
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


def _training_media(record: dict) -> tuple[str, str] | None:
    """(field, path) of the medium training decodes for ``record``: its video, else its image."""
    for field in ("video", "image"):
        if record.get(field):
            return field, record[field]
    return None


def training_media_paths(records: list[dict]) -> list[str]:
    """The file of every record's training medium (each once): what a training run's fingerprint hashes."""
    return sorted({m[1] for m in map(_training_media, records) if m is not None})


def _training_problem(field: str, path: str, media: dict) -> str | None:
    try:
        if field == "video":
            frame_cache.read_video(path, *video.sampling(media), cache_dir=media.get("frame_cache"),
                                   max_bytes=media.get("frame_cache_max_bytes"))
        else:
            video.read_image(path)
    except video.UnreadableMedia as exc:
        return str(exc)
    return None


def check_training_media(records: list[dict], media: dict) -> None:
    """Decode every record's video (at ``media``'s sampling settings) or image as training will, before
    the first round, so a bad file stops the job now rather than in round 3.

    ``records`` come from ``queries.load_queries`` (paths resolved, ``_source`` = "file, line N").
    Raises InputError naming the first bad record's file, line and field, and how many more there are."""
    verdicts: dict[tuple[str, str], str | None] = {}
    bad = []
    for rec in records:
        medium = _training_media(rec)
        if medium is None:
            continue
        if medium not in verdicts:
            verdicts[medium] = _training_problem(*medium, media)
        if verdicts[medium] is not None:
            bad.append((rec, *medium, verdicts[medium]))
    if not bad:
        return
    rec, field, path, problem = bad[0]
    detail = f"{field} file not found: {path}" if problem == "missing" else f"unreadable {field} {path}: {problem}"
    if len(bad) > 1:
        others = "; ".join(f"{r.get('_source', r.get('id'))} ({f})" for r, f, _, _ in bad[1:SHOWN + 1])
        detail += f"; {len(bad) - 1} more records with missing or unreadable media: {others}"
        detail += "; ..." if len(bad) > SHOWN + 1 else ""
    raise InputError(rec.get("_source", f"record {rec.get('id')}"), detail, field=field)
