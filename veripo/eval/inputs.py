"""One benchmark question as model input: the chat prompt, the sampled video frames, an inline image.

Both backends start from the same ``EvalInput``, so HF and vLLM see identical frames and text; the HF
backend turns it into tensors with ``policy.encode``, the encoder of training prompts. The video comes
first in the user turn, then the record's inline image (VideoMMMU's ``image``, base64), then the text
of the authors' template.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from veripo import prompts

from veripo.model import policy

from veripo.media import decode as video
from veripo.media import frame_cache
from veripo.media.checks import decode_inline_image


@dataclass
class EvalInput:
    key: str
    text: str  # the chat-templated prompt, generation prompt included
    video: video.DecodedVideo | None
    image: Any | None  # PIL image


def messages(question: dict, templates: dict) -> list[dict]:
    return prompts.user_turn(prompts.prompt_text(question, templates), video=True,
                             image=bool(question["raw"].get("image")))


def prepare(processor, question: dict, video_root: str, media: dict, templates: dict) -> EvalInput:
    """Decode the question's video at the benchmark's media settings and render its chat prompt."""
    source = f"question {question['key']}"
    text = policy.chat_text(processor, messages(question, templates))
    clip = frame_cache.decode_video(os.path.join(video_root, question["video_path"]), *video.sampling(media),
                                    source=source, cache_dir=media.get("frame_cache"),
                                    max_bytes=media.get("frame_cache_max_bytes"))
    image = question["raw"].get("image")
    return EvalInput(question["key"], text, clip, decode_inline_image(image, source) if image else None)
