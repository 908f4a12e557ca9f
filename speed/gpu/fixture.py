"""What every step of the GPU check builds: a random Qwen2.5-VL of a named shape, its processor, a video.

Nothing is downloaded. The weights are random (seeded) with the real checkpoints' shapes; the tokenizer
is the project's offline one (veripo.model.tiny.build_tokenizer), so token ids past its few hundred
entries decode to nothing, which changes no tensor shape and no FLOP count. The clip is one of the
project's synthetic videos (veripo.data.synthetic), long enough for the 7B config's frame budget.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Shape:
    """A Qwen2.5-VL architecture: the text decoder and the vision tower."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int | None  # None: the tokenizer's size padded to a multiple of 64, as tiny.py pads it
    tied: bool  # lm_head shares the embedding matrix
    vision_depth: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    full_attention: tuple[int, ...]  # vision blocks that attend over the whole frame, not a window


_VISION = dict(vision_depth=32, vision_hidden=1280, vision_intermediate=3420, vision_heads=16,
               full_attention=(7, 15, 23, 31))
# config.json of Qwen/Qwen2.5-VL-3B-Instruct and -7B-Instruct
SHAPES = {
    "3b": Shape(hidden=2048, intermediate=11008, layers=36, heads=16, kv_heads=2, vocab=151936, tied=True, **_VISION),
    "7b": Shape(hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064, tied=False, **_VISION),
}
# The 3B's widths and vocabulary with 4 text layers and 4 vision blocks: fp32 sampler identity on a GPU.
SHAPES["small"] = replace(SHAPES["3b"], layers=4, vision_depth=4, full_attention=(3,))


def _config_yaml(path: Path = ROOT / "config.yaml") -> dict:
    return yaml.safe_load(path.read_text())


def tiny_shape() -> Shape:
    """The project's tiny model (config.yaml ``tiny_model``), the shape of the CPU dry run."""
    from veripo.config import TINY_VISION_HEADS

    spec = _config_yaml()["tiny_model"]
    return Shape(hidden=spec["hidden_size"], intermediate=2 * spec["hidden_size"], layers=spec["num_layers"],
                 heads=spec["num_heads"], kv_heads=spec["num_kv_heads"], vocab=None, tied=False,
                 vision_depth=spec["vision_depth"], vision_hidden=spec["vision_hidden_size"],
                 vision_intermediate=2 * spec["vision_hidden_size"], vision_heads=TINY_VISION_HEADS,
                 full_attention=(spec["vision_depth"] - 1,))


def shape(name: str, layers: int | None = None) -> Shape:
    """Shape ``name`` (3b, 7b, small, tiny), optionally with another number of text layers."""
    s = tiny_shape() if name == "tiny" else SHAPES[name]
    return replace(s, layers=layers) if layers else s


def small_shape(name: str) -> str:
    """The shape the fp32 sampler identity runs at, for a check run at shape ``name``."""
    return "tiny" if name == "tiny" else "small"


def templates() -> dict:
    return _config_yaml()["prompts"]


def media(name: str) -> dict:
    """Video sampling: the tiny default's for tiny, else the 7B training config's (32 frames at 2 fps,
    128 visual tokens per two frames: 2048 video tokens)."""
    if name == "tiny":
        return dict(_config_yaml()["media"])
    return dict(_config_yaml(ROOT / "configs" / "qwen25vl-7b.yaml")["media"])


def logprob_chunk() -> int:
    """train.logprob_chunk of the 7B config."""
    return int(_config_yaml(ROOT / "configs" / "qwen25vl-7b.yaml")["train"]["logprob_chunk"])


def build_tokenizer():
    from veripo.model.tiny import build_tokenizer as tiny_tokenizer

    return tiny_tokenizer(_config_yaml()["tiny_model"]["vocab_size"], templates().values())


def build_processor(tok, media_cfg: dict):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from veripo.model import policy
    from veripo.model.tiny import CHAT_TEMPLATE

    px = dict(min_pixels=media_cfg["min_pixels"], max_pixels=media_cfg["max_pixels"], patch_size=14,
              temporal_patch_size=2, merge_size=2)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**px), tokenizer=tok,
                                    video_processor=Qwen2VLVideoProcessor(**px, min_frames=2, max_frames=768),
                                    chat_template=CHAT_TEMPLATE)
    policy.configure_processor(processor, media_cfg)
    return processor


def model_config(s: Shape, tok):
    from transformers import Qwen2_5_VLConfig

    from veripo.model.tiny import SPECIAL_TOKENS

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    half = s.hidden // s.heads // 2
    # M-RoPE splits each head's rotary half 2:3:3 into time/height/width ([16, 24, 24] for head dim 128)
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=s.vocab or ((len(tok) + 63) // 64) * 64, hidden_size=s.hidden,
            intermediate_size=s.intermediate, num_hidden_layers=s.layers, num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=s.tied),
        vision_config=dict(
            depth=s.vision_depth, hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
            num_heads=s.vision_heads, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, out_hidden_size=s.hidden, fullatt_block_indexes=list(s.full_attention),
            tokens_per_second=2, hidden_act="silu"),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=s.tied,
    )


def build_model(s: Shape, tok, device, dtype, seed: int = 0):
    """Random weights of shape ``s``, initialised directly on ``device`` in ``dtype`` (seconds for 3B on
    a GPU); greedy by default, stopping at <|im_end|> or <|endoftext|> as the instruct checkpoints do."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    cfg = model_config(s, tok)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    end = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(bos_token_id=end[1], eos_token_id=end, pad_token_id=end[1],
                                               do_sample=False)
    return model


def video_record(work: Path, name: str) -> dict:
    """One multiple-choice question on a synthetic clip, written once per work folder (the steps run one
    after another); the video path is absolute. Tiny: 2 s of 64x64 (the tiny default's budget). Else
    16 s of 448x448 at 8 fps: 32 frames at 2 fps."""
    from veripo.data import synthetic

    folder = work / f"clip-{name}"
    record = folder / "record.json"
    if not record.exists():
        size, seconds = (64, 2.0) if name == "tiny" else (448, 16.0)
        (rec,) = synthetic.make_video_set(folder, 1, seed=0, tasks=["direction"], size=size, fps=8, seconds=seconds)
        rec = {**rec, "id": "gpu-check", "video": os.fspath(folder / rec["video"])}
        tmp = record.with_suffix(".part")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, record)
    return json.loads(record.read_text())
