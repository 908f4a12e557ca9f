"""Decode a video on the CPU (PyAV) and sample frames the way Qwen2.5-VL's recipe does.

transformers 5.x only decodes video paths through torchcodec, which cannot load on a CPU torch, so
we decode ourselves and hand the processor frames plus ``VideoMetadata``.

Only the sampled frames are kept: an hour of 640x480 video is ~330 GB as RGB arrays, while the 8-16
frames a prompt uses are a few MB. Which frames are sampled depends on the decoded frame count, and
containers' frame counts are missing (Matroska, WebM) or can disagree with what the decoder returns
(edit lists), so the count from the header (or from reading packets without decoding them) is only a
guess: the decode counts the frames itself and decodes again, keeping the right ones, if it was wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from veripo.errors import InputError

FRAME_FACTOR = 2  # Qwen2.5-VL's temporal patch size: frame counts must be a multiple of it
# The Qwen2-VL video processor's per-frame pixel cap, as qwen-vl-utils (the authors' preprocessing) applies
# it: each frame gets at most an even share of a whole-video budget (0.9 x 128000 tokens' worth).
# transformers 5.17 leaves it off unless told and turns it on by default from 5.22, so every place where
# frames become pixels passes it explicitly (vLLM: mm_processor_kwargs in veripo/eval/backends/vllm.py;
# the HF processor: its ``cap_pixels_per_frame`` attribute), and HF and vLLM count the same video tokens
# on either side of that change. At the configured sizes (<= 128 frames of <= 200704 pixels) it changes
# no frame size: it binds past 2 * 0.9 * 128000 * 28 * 28 / max_pixels frames.
CAP_PIXELS_PER_FRAME = True
NOT_REGULAR = "not a regular file (a named pipe, device or folder would block or fail the read)"


class UnreadableMedia(ValueError):
    """Why a media file cannot be read; the message carries no location (callers add the record)."""


@dataclass
class DecodedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8
    indices: list[int]
    native_fps: float
    total_frames: int

    def metadata(self):
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(total_num_frames=self.total_frames, fps=self.native_fps,
                             frames_indices=self.indices, duration=self.total_frames / self.native_fps)


def sample_indices(total: int, native_fps: float, fps: float, min_frames: int, max_frames: int) -> list[int]:
    """Evenly spaced frame indices at ``fps``, clamped to [min_frames, max_frames], even count."""
    duration = total / native_fps
    n = round(duration * fps)
    n = max(min_frames, min(max_frames, n))
    n = max(FRAME_FACTOR, (n // FRAME_FACTOR) * FRAME_FACTOR)
    return np.linspace(0, total - 1, n).round().astype(int).tolist()


def sampling(media: dict) -> tuple[float, int, int]:
    """(fps, min_frames, max_frames) of a stage's ``media`` config, read the same way by every stage so
    a pre-check decodes exactly the frames the stage will."""
    return media["fps"], media.get("min_frames", 2), media["max_frames"]


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be opened as a media file, or None; looks without opening, since opening a
    named pipe blocks until something writes to it."""
    if not os.path.exists(path):
        return "missing"
    if not os.path.isfile(path):
        return NOT_REGULAR
    return None


def _require_file(path: str, where: str, field: str) -> None:
    problem = file_problem(path)
    if problem == "missing":
        raise InputError(where, f"{field} file not found: {path}", field=field)
    if problem:
        raise InputError(where, f"{field} {path} is {problem}", field=field)


def _frame_count_guess(path: str) -> tuple[float, int]:
    """(native fps, expected frame count): the header's count, else the video packets counted
    without decoding them; 0 when neither says."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise UnreadableMedia("no video stream")
        stream = container.streams.video[0]
        native_fps = float(stream.average_rate or stream.guessed_rate or 1.0)
        if stream.frames > 0:
            return native_fps, stream.frames
        return native_fps, sum(1 for p in container.demux(stream) if p.size and not p.is_discard)


def _decode_keeping(path: str, wanted: set[int]) -> tuple[int, dict[int, np.ndarray]]:
    """(frames decoded, RGB arrays of the ``wanted`` frame indices); every other frame is dropped
    undecoded to RGB, so memory holds the wanted frames and the decoder's own few buffers."""
    import av

    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(path) as container:
        for count, frame in enumerate(container.decode(container.streams.video[0]), 1):
            if count - 1 in wanted:
                kept[count - 1] = frame.to_ndarray(format="rgb24")
    return count, kept


def read_video(path: str, fps: float, min_frames: int = 2, max_frames: int = 16) -> DecodedVideo:
    """Frames of ``path`` sampled at ``fps``; raises UnreadableMedia."""
    import av

    problem = file_problem(path)
    if problem:
        raise UnreadableMedia(problem)
    try:
        native_fps, guess = _frame_count_guess(path)
        idx = sample_indices(guess, native_fps, fps, min_frames, max_frames) if guess else []
        total, kept = _decode_keeping(path, set(idx))
        if total == 0:
            raise UnreadableMedia("no frames")
        if total != guess:
            idx = sample_indices(total, native_fps, fps, min_frames, max_frames)
            if not set(idx) <= kept.keys():
                kept = {}  # release the wrong picks before decoding the right ones
                _, kept = _decode_keeping(path, set(idx))
        return DecodedVideo(np.stack([kept[i] for i in idx]), idx, native_fps, total)
    except UnreadableMedia:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UnreadableMedia(str(exc)) from None


def decode_video(path: str, fps: float, min_frames: int = 2, max_frames: int = 16,
                 source: str | None = None) -> DecodedVideo:
    """Frames of ``path`` sampled at ``fps``. Errors name ``source`` (the record that asked for it)."""
    where = source or path
    _require_file(path, where, "video")
    try:
        return read_video(path, fps, min_frames, max_frames)
    except UnreadableMedia as exc:
        raise InputError(where, f"unreadable video {path}: {exc}", field="video") from None


def read_image(path: str):
    """``path`` as an RGB PIL image; raises UnreadableMedia."""
    from PIL import Image, UnidentifiedImageError

    problem = file_problem(path)
    if problem:
        raise UnreadableMedia(problem)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise UnreadableMedia(str(exc)) from None


def load_image(path: str, source: str | None = None):
    where = source or path
    _require_file(path, where, "image")
    try:
        return read_image(path)
    except UnreadableMedia as exc:
        raise InputError(where, f"unreadable image {path}: {exc}", field="image") from None
