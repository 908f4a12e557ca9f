"""Decode a video on the CPU (PyAV) and sample frames the way Qwen2.5-VL's recipe does.

transformers 5.x only decodes video paths through torchcodec, which cannot load on a CPU torch, so
we decode ourselves and hand the processor frames plus ``VideoMetadata``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from veripo.errors import InputError

FRAME_FACTOR = 2  # Qwen2.5-VL's temporal patch size: frame counts must be a multiple of it


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


def decode_video(path: str, fps: float, min_frames: int = 2, max_frames: int = 16,
                 source: str | None = None) -> DecodedVideo:
    """Frames of ``path`` sampled at ``fps``. Errors name ``source`` (the record that asked for it)."""
    import av

    where = source or path
    if not os.path.exists(path):
        raise InputError(where, f"video file not found: {path}", field="video")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            native_fps = float(stream.average_rate or stream.guessed_rate or 1.0)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise InputError(where, f"unreadable video {path}: {exc}", field="video") from None
    if not frames:
        raise InputError(where, f"video has no frames: {path}", field="video")
    idx = sample_indices(len(frames), native_fps, fps, min_frames, max_frames)
    return DecodedVideo(np.stack([frames[i] for i in idx]), idx, native_fps, len(frames))


def load_image(path: str, source: str | None = None):
    from PIL import Image, UnidentifiedImageError

    where = source or path
    if not os.path.exists(path):
        raise InputError(where, f"image file not found: {path}", field="image")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(where, f"unreadable image {path}: {exc}", field="image") from None
