"""The policy: load a Qwen2.5-VL checkpoint, encode a query once, sample rollouts, score log-probs.

Why our own encode/sample path rather than ``generate(num_return_sequences=G)``: HF repeats the
pixel tensors G times and runs the vision tower on every copy. Here the vision features and the 3-D
(M-RoPE) positions of a query are computed once and shared by its G rollouts and by every training
forward of that query (policy, old policy, reference), and the video is in every one of those forwards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from veripo.media.torchvision_cpu import apply as _tv_apply

_tv_apply()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

from veripo import prompts  # noqa: E402

from veripo.media import decode as video
from veripo.media import frame_cache
from veripo.model import decode as decoder
from veripo.model.decode import Decoding, Prefill, Rollouts, logprob_temperature
from veripo.model.positions import rope_index

MEDIA_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


@dataclass
class EncodedPrompt:
    """One query after the processor: token ids, pixel tensors and M-RoPE positions."""

    input_ids: torch.Tensor  # (1, P)
    media: dict  # processor tensors for the vision tower
    mm_token_type_ids: torch.Tensor  # (1, P)
    positions: torch.Tensor | None = None  # (3, 1, P), filled on first use
    rope_delta: torch.Tensor | None = None  # (1, 1)
    features: dict = field(default_factory=dict)  # id(model) -> detached vision features

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]


def load_policy(path: str, dtype: str = "float32", attn_implementation: str | None = None):
    """Model and processor of the checkpoint at ``path``; a checkpoint that cannot be read is an
    InputError naming the file (a truncated safetensors shard, a missing or malformed config)."""
    from safetensors import SafetensorError, safe_open
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from veripo.errors import InputError
    from veripo.model import attention

    kw = {"dtype": getattr(torch, dtype)}
    attn_implementation = attention.choose(attn_implementation)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kw)
        processor = AutoProcessor.from_pretrained(path)
    except SafetensorError as exc:
        # The error names no file; find the shard that does not open (header and size checks only).
        names = os.listdir(path) if os.path.isdir(path) else []
        shards = sorted(os.path.join(path, f) for f in names if f.endswith(".safetensors"))
        for shard in shards:
            try:
                with safe_open(shard, framework="pt"):
                    pass
            except SafetensorError as shard_exc:
                raise InputError(shard, f"unreadable safetensors checkpoint: {_first_line(shard_exc)}") from None
        raise InputError(path, f"unreadable safetensors checkpoint: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot load the checkpoint: {_first_line(exc)}") from None
    return model, processor


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def configure_processor(processor, media_cfg: dict) -> None:
    """Pin pixel budgets on the processor so CPU and GPU tokenise a video alike."""
    size = {"shortest_edge": media_cfg["min_pixels"], "longest_edge": media_cfg["max_pixels"]}
    processor.video_processor.size = size
    processor.image_processor.size = dict(size)
    # the per-frame cap, explicitly (transformers' default flips in 5.22; vLLM is told the same)
    processor.video_processor.cap_pixels_per_frame = video.CAP_PIXELS_PER_FRAME


def resolve(path: str, base_dir: str | None) -> str:
    return path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path)


def chat_text(processor, messages: list[dict]) -> str:
    """The chat-templated prompt, ending where the assistant's reply starts."""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(processor, text: str, clip: video.DecodedVideo | None = None, image=None) -> EncodedPrompt:
    """The processor's tensors for a chat-templated prompt and its decoded media (pixel budgets as set
    by ``configure_processor``). Training and evaluation both encode through here, so a prompt is
    tokenised alike wherever it is used."""
    kw: dict = {}
    if clip is not None:
        # do_sample_frames=False: the frames are already the sampled ones (veripo/media/decode.py).
        kw.update(videos=[clip.frames], video_metadata=[clip.metadata()], do_sample_frames=False)
    if image is not None:
        kw["images"] = [image]
    out = processor(text=[text], return_tensors="pt", **kw)
    media = {k: out[k] for k in MEDIA_KEYS if k in out}
    return EncodedPrompt(out["input_ids"], media, out["mm_token_type_ids"])


def query_inputs(processor, record: dict, templates: dict, media_cfg: dict, base_dir: str | None = None,
                 source: str | None = None) -> tuple[str, video.DecodedVideo | None, object]:
    """(chat text, decoded clip, image) of a training record: its video, else its image, as training
    decodes them (our encoder and the vLLM rollout engine both take these)."""
    clip = image = None
    if record.get("video"):
        clip = frame_cache.decode_video(resolve(record["video"], base_dir), *video.sampling(media_cfg), source=source,
                                        cache_dir=media_cfg.get("frame_cache"),
                                        max_bytes=media_cfg.get("frame_cache_max_bytes"))
    elif record.get("image"):
        image = video.load_image(resolve(record["image"], base_dir), source=source)
    return chat_text(processor, prompts.messages(record, templates)), clip, image


def encode_query(processor, record: dict, templates: dict, media_cfg: dict, base_dir: str | None,
                 source: str | None = None) -> EncodedPrompt:
    """Decode the training record's video (else its image) and encode its chat prompt."""
    return encode(processor, *query_inputs(processor, record, templates, media_cfg, base_dir, source))


def model_device(model) -> torch.device:
    """Where the model computes: its input embedding's device (a ZeRO-3 partition reports the rank's
    device too). Every tensor a forward meets is created there."""
    return model.get_input_embeddings().weight.device


def place(prompt: EncodedPrompt, device: torch.device) -> EncodedPrompt:
    """Move the prompt's tensors to ``device`` in place (once: a prompt serves many forwards)."""
    if prompt.input_ids.device != device:
        prompt.input_ids = prompt.input_ids.to(device)
        prompt.mm_token_type_ids = prompt.mm_token_type_ids.to(device)
        prompt.media = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in prompt.media.items()}
        prompt.positions = prompt.positions.to(device) if prompt.positions is not None else None
        prompt.rope_delta = prompt.rope_delta.to(device) if prompt.rope_delta is not None else None
        prompt.features = {}
    return prompt


def _vision_features(model, prompt: EncodedPrompt, grad: bool) -> dict:
    inner = model.model
    feats = {}
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        if "pixel_values_videos" in prompt.media:
            out = inner.get_video_features(prompt.media["pixel_values_videos"], prompt.media["video_grid_thw"])
            feats["video"] = torch.cat(out.pooler_output, 0)
        if "pixel_values" in prompt.media:
            out = inner.get_image_features(prompt.media["pixel_values"], prompt.media["image_grid_thw"])
            feats["image"] = torch.cat(out.pooler_output, 0)
    return feats


def _idle_vision_call(model) -> torch.Tensor:
    """The vision tower on one 28x28 image (one merged token), as a 0 to add to the embeddings.

    Under ZeRO-3 every forward must call the same modules on every rank (each module call gathers its
    parameters with a collective), and under data parallelism every trainable parameter must get a
    gradient on every rank. A forward whose prompt has no image or video, or whose features are cached,
    calls the tower on this instead."""
    v = model.config.vision_config
    merge = v.spatial_merge_size
    patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size ** 2
    dev = model_device(model)
    pixels = torch.zeros(merge * merge, patch_dim, dtype=model.model.visual.dtype, device=dev)
    grid = torch.tensor([[1, merge, merge]], dtype=torch.long, device=dev)
    out = torch.cat(model.model.get_image_features(pixels, grid).pooler_output, 0)
    return out.sum() * 0


def vision_trainable(model) -> bool:
    return any(p.requires_grad for p in model.model.visual.parameters()) and torch.is_grad_enabled()


def lockstep(model) -> bool:
    """Whether every forward must call the vision tower exactly once (set by the DeepSpeed engine)."""
    return getattr(model, "veripo_lockstep", False)


def _prompt_features(model, prompt: EncodedPrompt) -> dict:
    """The prompt's vision features; a frozen tower's are computed once per (model, query) and reused.
    Under ``lockstep`` the tower is called exactly once per forward (on an idle image when reusing)."""
    called = False
    if vision_trainable(model):
        feats = _vision_features(model, prompt, grad=True)
        called = bool(feats)
    elif id(model) in prompt.features:
        feats = prompt.features[id(model)]
    else:
        feats = prompt.features[id(model)] = _vision_features(model, prompt, grad=False)
        called = bool(feats)
    if lockstep(model) and not called:
        feats = {**feats, "idle": _idle_vision_call(model)}
    return feats


def scatter_features(model, ids: torch.Tensor, emb: torch.Tensor, feats: dict) -> torch.Tensor:
    """Vision features into the rows' placeholder tokens (each row holds the same prompt)."""
    cfg = model.config
    for kind, token_id in (("video", cfg.video_token_id), ("image", cfg.image_token_id)):
        if kind in feats:
            rows = ids.shape[0]
            mask = (ids == token_id).unsqueeze(-1).expand_as(emb)
            # checked where the count is (a device-side assert on a GPU): reading it back would make
            # every training forward wait for the GPU
            torch._assert_async(mask[..., 0].sum() == feats[kind].shape[0] * rows,
                                f"{kind} tokens and features differ ({feats[kind].shape[0]} features per row)")
            emb = emb.masked_scatter(mask, feats[kind].to(emb.dtype).repeat(rows, 1))
    if "idle" in feats:
        emb = emb + feats["idle"].to(emb.dtype)
    return emb


def prompt_embeds(model, prompt: EncodedPrompt) -> torch.Tensor:
    """(1, P, D) input embeddings with the vision features scattered into their placeholder tokens."""
    place(prompt, model_device(model))
    emb = model.model.get_input_embeddings()(prompt.input_ids)
    return scatter_features(model, prompt.input_ids, emb, _prompt_features(model, prompt))


def prompt_positions(model, prompt: EncodedPrompt) -> tuple[torch.Tensor, torch.Tensor]:
    place(prompt, model_device(model))
    if prompt.positions is None:
        m = prompt.media
        dev = prompt.input_ids.device
        if "video_grid_thw" in m or "image_grid_thw" in m:
            pos, delta = rope_index(model.config, prompt.input_ids, prompt.mm_token_type_ids,
                                    m.get("image_grid_thw"), m.get("video_grid_thw"), m.get("second_per_grid_ts"))
        else:
            pos = torch.arange(prompt.length, device=dev).view(1, 1, -1).expand(3, 1, -1)
            delta = torch.zeros(1, 1, dtype=torch.long, device=dev)
        prompt.positions, prompt.rope_delta = pos.to(dev), delta.to(dev)
    return prompt.positions, prompt.rope_delta


def _continuation_positions(prompt: EncodedPrompt, start: int, length: int, n: int) -> torch.Tensor:
    """(3, n, length) positions of text tokens following the prompt: plain 1-D positions + delta."""
    dev = prompt.input_ids.device
    pos = torch.arange(prompt.length + start, prompt.length + start + length, device=dev) + prompt.rope_delta.view(-1)[0]
    return pos.view(1, 1, -1).expand(3, n, -1)


def completion_logprobs(model, prompt: EncodedPrompt, completions: torch.Tensor,
                        mask: torch.Tensor, temperature: float = 1.0, chunk: int | None = None,
                        forward=None) -> torch.Tensor:
    """(n, T) log-probs of ``completions`` (n, T) given the prompt, the vision features included,
    under softmax(logits / temperature): the distribution a sampler at that temperature drew from.
    Returned on the model's device (inputs may be anywhere). ``forward`` runs the root module (default
    ``model``): a training loop passes its ``TrainEngine.forward`` for a loss it will backpropagate.

    The decoder runs once over prompt + completions; the LM head sees only the positions that predict
    a completion token, and the full-vocabulary float32 log-softmax exists for ``chunk`` of them at a
    time (see ``token_logprobs``): at 7B shapes whole-sequence float32 logits are gigabytes per row."""
    dev = model_device(model)
    place(prompt, dev)
    completions, mask = completions.to(dev), mask.to(dev)
    n, T = completions.shape
    pos, _ = prompt_positions(model, prompt)
    positions = torch.cat([pos.expand(3, n, -1), _continuation_positions(prompt, 0, T, n)], 2)
    attn = torch.cat([torch.ones(n, prompt.length, dtype=torch.long, device=dev), mask.long()], 1)
    ids = torch.cat([prompt.input_ids.expand(n, -1), completions], 1)
    emb = scatter_features(model, ids, model.model.get_input_embeddings()(ids), _prompt_features(model, prompt))
    # The LM head runs once per forward (under ZeRO-3 each call gathers it: ranks must agree on the count).
    logits = (forward or model)(inputs_embeds=emb, position_ids=positions, attention_mask=attn, use_cache=False,
                   logits_to_keep=T + 1).logits[:, :-1]
    return token_logprobs(logits, completions, logprob_temperature(temperature), chunk)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                   chunk: int | None = None) -> torch.Tensor:
    """(n, T) float32 log-softmax(logits / temperature) at ``tokens``, ``chunk`` positions at a time.

    Each chunk's float32 copy and log-softmax are recomputed in the backward (activation checkpoint)
    rather than kept, so the float32 full-vocabulary tensors of only one chunk exist at any time."""
    T = tokens.shape[1]
    chunk = T if not chunk or chunk >= T else chunk
    parts = []
    for c in range(0, T, chunk):
        args = (logits[:, c:c + chunk], tokens[:, c:c + chunk], temperature)
        if torch.is_grad_enabled() and logits.requires_grad and chunk < T:
            parts.append(torch.utils.checkpoint.checkpoint(_gather_logprobs, *args, use_reentrant=False))
        else:
            parts.append(_gather_logprobs(*args))
    return torch.cat(parts, 1)


def _gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    scaled = logits.float() / temperature if temperature != 1.0 else logits.float()
    return torch.gather(F.log_softmax(scaled, -1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def suppressed_token_ids(model) -> list[int]:
    """Vision placeholders must never be sampled: a sampled <|video_pad|> breaks the next forward."""
    c = model.config
    return [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id]


@torch.no_grad()
def sample(model, prompt: EncodedPrompt, n: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, repetition_penalty: float = 1.0, generator: torch.Generator | None = None,
           eos_ids: list[int] | None = None, pad_id: int = 0, graphs: str = "auto") -> Rollouts:
    """Sample ``n`` completions: one prefill of the prompt (vision once), whose KV cache every row
    continues (``veripo.model.decode``). temperature <= 1e-5 means greedy; ``graphs`` as in ``Decoding``."""
    pos, delta = prompt_positions(model, prompt)
    dev = prompt.input_ids.device
    out = model(inputs_embeds=prompt_embeds(model, prompt), position_ids=pos,
                attention_mask=torch.ones(1, prompt.length, dtype=torch.long, device=dev), use_cache=True,
                logits_to_keep=1)
    prefill = Prefill(logits=out.logits[:, -1], cache=out.past_key_values,
                      attn=torch.ones(n, prompt.length, dtype=torch.long, device=dev),
                      next_pos=(prompt.length + delta.view(-1)[0]).expand(n),
                      history=prompt.input_ids.expand(n, -1))
    del out
    return decode_steps(model, prefill, max_new_tokens, temperature, top_p, repetition_penalty, generator,
                        eos_ids, pad_id, graphs)


def decode_steps(model, prefill: Prefill, max_new_tokens: int, temperature: float, top_p: float,
                 repetition_penalty: float, generator: torch.Generator | None, eos_ids: list[int] | None,
                 pad_id: int, graphs: str = "auto") -> Rollouts:
    """The decoding loop of ``sample`` and ``batch_generate.generate`` (``veripo.model.decode``), with the
    model's EOS ids unless ``eos_ids`` are given and its vision placeholders suppressed."""
    d = Decoding(max_new_tokens, temperature, top_p, repetition_penalty,
                 tuple(eos_ids if eos_ids is not None else _eos_ids(model)), pad_id,
                 tuple(suppressed_token_ids(model)), graphs)
    return decoder.decode_steps(model, prefill, d, generator)


def _eos_ids(model) -> list[int]:
    eos = model.generation_config.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def decode(processor, rollouts: Rollouts) -> list[str]:
    out = []
    for row, m in zip(rollouts.tokens, rollouts.mask):
        out.append(processor.tokenizer.decode(row[m.bool()], skip_special_tokens=True))
    return out


def encode_completion(processor, text: str, eos_token: str = "<|im_end|>") -> torch.Tensor:
    ids = processor.tokenizer(text + eos_token, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return ids[0]


def pad_completions(seqs: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    toks = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        toks[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return toks, mask
