"""Build a tiny Qwen2.5-VL (model, tokenizer, processor, chat template) offline and deterministically.

The directory has the same files as a hub checkpoint, so every ``from_pretrained`` code path runs
unchanged on it and on Qwen2.5-VL-7B. The tokenizer is a byte-level BPE trained on a built-in corpus
(the prompt templates and the synthetic tasks' words), with Qwen's special tokens in Qwen's order and
the reasoning tags as ordinary added tokens so they survive ``skip_special_tokens`` decoding.
"""
from __future__ import annotations

import os
from typing import Iterable

from veripo.media.torchvision_cpu import apply as _tv_apply

_tv_apply()

import torch  # noqa: E402

from veripo.config import TINY_VISION_HEADS, check_tiny_model  # noqa: E402

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen2's pre-tokenisation pattern (splits letters, single digits, punctuation runs, whitespace).
_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _corpus(extra: Iterable[str]) -> list[str]:
    from veripo.data import synthetic

    lines = list(extra)
    lines += synthetic.vocabulary_corpus()
    return lines


def build_tokenizer(vocab_size: int, corpus_extra: Iterable[str] = ()):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    import json

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    bpe.train_from_iterator(_corpus(corpus_extra), trainer=trainer)
    state = json.loads(bpe.to_str())
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in state["model"]["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["model"]["vocab"], merges=merges, unk_token=None, bos_token=None,
        eos_token="<|endoftext|>", pad_token="<|endoftext|>", errors="replace",
        model_max_length=32768, clean_up_tokenization_spaces=False, split_special_tokens=False,
    )
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]})
    tok.eos_token = "<|im_end|>"  # as in the real Qwen2.5-VL-*-Instruct tokenizer_config
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_qwen25vl(out_dir: str, spec: dict, corpus_extra: Iterable[str] = ()) -> dict:
    """Write a randomly initialised tiny Qwen2.5-VL checkpoint described by ``spec`` (config ``tiny_model``)."""
    from transformers import (GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    check_tiny_model(spec)
    tok = build_tokenizer(spec["vocab_size"], corpus_extra)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + TAG_TOKENS}
    n_vocab = ((len(tok) + 63) // 64) * 64  # padded like real checkpoints
    hidden = spec["hidden_size"]
    half = hidden // spec["num_heads"] // 2
    # M-RoPE splits each head's rotary half into temporal/height/width parts in Qwen's 2:3:3 ratio
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=n_vocab, hidden_size=hidden, intermediate_size=2 * hidden,
            num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
            num_key_value_heads=spec["num_kv_heads"], max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                             "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=spec["vision_depth"], hidden_size=spec["vision_hidden_size"],
            intermediate_size=2 * spec["vision_hidden_size"], num_heads=TINY_VISION_HEADS, in_channels=3,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=hidden,
            fullatt_block_indexes=[spec["vision_depth"] - 1], tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec["seed"])
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
    )
    px = spec["max_pixels"]
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=px,
                                            patch_size=14, temporal_patch_size=2, merge_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28 * 4, max_pixels=px, patch_size=14,
                                            temporal_patch_size=2, merge_size=2, min_frames=2,
                                            max_frames=32, fps=2.0)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok,
                                    video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {"params": sum(p.numel() for p in model.parameters()), "vocab": len(tok), "padded_vocab": n_vocab}
