"""One benchmark question as model input: the chat prompt, the sampled video frames, an inline image.

Both backends start from the same ``EvalInput``, so HF and vLLM see identical frames and text. The
video comes first in the user turn, then the record's inline image (VideoMMMU's ``image``, base64),
then the text of the authors' template.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from veripo import prompts

from veripo.model import policy

from veripo.media import decode as video
from veripo.media.checks import decode_inline_image


@dataclass
class EvalInput:
    key: str
    text: str  # the chat-templated prompt, generation prompt included
    video: video.DecodedVideo | None
    image: Any | None  # PIL image

    def video_metadata(self) -> dict:
        """Metadata of the sampled frames as plain data (what vLLM's video items carry)."""
        v = self.video
        return {"fps": v.native_fps, "duration": v.total_frames / v.native_fps, "total_num_frames": v.total_frames,
                "frames_indices": list(v.indices), "video_backend": "pyav"}


def messages(question: dict, templates: dict) -> list[dict]:
    content: list[dict] = [{"type": "video"}]
    if question["raw"].get("image"):
        content.append({"type": "image"})
    content.append({"type": "text", "text": prompts.prompt_text(question, templates)})
    return [{"role": "user", "content": content}]


def prepare(processor, question: dict, video_root: str, media: dict, templates: dict) -> EvalInput:
    """Decode the question's video at the benchmark's media settings and render its chat prompt."""
    source = f"question {question['key']}"
    text = processor.apply_chat_template(messages(question, templates), tokenize=False, add_generation_prompt=True)
    clip = video.decode_video(os.path.join(video_root, question["video_path"]), *video.sampling(media),
                              source=source)
    image = question["raw"].get("image")
    return EvalInput(question["key"], text, clip, decode_inline_image(image, source) if image else None)


def encode(processor, inp: EvalInput) -> policy.EncodedPrompt:
    """The processor's tensors for the HF backend (pixel budgets as set by policy.configure_processor)."""
    kw: dict = {}
    if inp.video is not None:
        kw.update(videos=[inp.video.frames], video_metadata=[inp.video.metadata()], do_sample_frames=False)
    if inp.image is not None:
        kw["images"] = [inp.image]
    out = processor(text=[inp.text], return_tensors="pt", **kw)
    media = {k: out[k] for k in policy.MEDIA_KEYS if k in out}
    return policy.EncodedPrompt(out["input_ids"], media, out["mm_token_type_ids"])
