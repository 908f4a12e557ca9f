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

from veripo import prompts  # noqa: E402

from veripo.media import decode as video

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

    kw = {"dtype": getattr(torch, dtype)}
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


def encode_query(processor, record: dict, templates: dict, media_cfg: dict, base_dir: str | None,
                 source: str | None = None) -> EncodedPrompt:
    """Decode the training record's video (else its image) and encode its chat prompt."""
    clip = image = None
    if record.get("video"):
        clip = video.decode_video(resolve(record["video"], base_dir), *video.sampling(media_cfg), source=source)
    elif record.get("image"):
        image = video.load_image(resolve(record["image"], base_dir), source=source)
    return encode(processor, chat_text(processor, prompts.messages(record, templates)), clip, image)


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


def vision_trainable(model) -> bool:
    return any(p.requires_grad for p in model.model.visual.parameters()) and torch.is_grad_enabled()


def prompt_embeds(model, prompt: EncodedPrompt) -> torch.Tensor:
    """(1, P, D) input embeddings with the vision features scattered into their placeholder tokens.

    A frozen vision tower's features are computed once per (model, query) and reused."""
    if vision_trainable(model):
        feats = _vision_features(model, prompt, grad=True)
    else:
        feats = prompt.features.get(id(model))
        if feats is None:
            feats = prompt.features[id(model)] = _vision_features(model, prompt, grad=False)
    emb = model.model.get_input_embeddings()(prompt.input_ids)
    cfg = model.config
    for kind, token_id in (("video", cfg.video_token_id), ("image", cfg.image_token_id)):
        if kind in feats:
            mask = (prompt.input_ids == token_id).unsqueeze(-1).expand_as(emb)
            if int(mask[..., 0].sum()) != feats[kind].shape[0]:
                raise RuntimeError(f"{kind} tokens ({int(mask[..., 0].sum())}) and features "
                                   f"({feats[kind].shape[0]}) differ")
            emb = emb.masked_scatter(mask, feats[kind].to(emb.dtype))
    return emb


def prompt_positions(model, prompt: EncodedPrompt) -> tuple[torch.Tensor, torch.Tensor]:
    if prompt.positions is None:
        m = prompt.media
        if "video_grid_thw" in m or "image_grid_thw" in m:
            pos, delta = model.model.get_rope_index(
                prompt.input_ids, prompt.mm_token_type_ids, image_grid_thw=m.get("image_grid_thw"),
                video_grid_thw=m.get("video_grid_thw"), second_per_grid_ts=m.get("second_per_grid_ts"))
        else:
            pos = torch.arange(prompt.length).view(1, 1, -1).expand(3, 1, -1)
            delta = torch.zeros(1, 1, dtype=torch.long)
        prompt.positions, prompt.rope_delta = pos, delta
    return prompt.positions, prompt.rope_delta


def _continuation_positions(prompt: EncodedPrompt, start: int, length: int, n: int) -> torch.Tensor:
    """(3, n, length) positions of text tokens following the prompt: plain 1-D positions + delta."""
    pos = torch.arange(prompt.length + start, prompt.length + start + length) + prompt.rope_delta.view(-1)[0]
    return pos.view(1, 1, -1).expand(3, n, -1)


def completion_logprobs(model, prompt: EncodedPrompt, completions: torch.Tensor,
                        mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(n, T) log-probs of ``completions`` (n, T) given the prompt, the vision features included,
    under softmax(logits / temperature): the distribution a sampler at that temperature drew from.

    Only the last T+1 positions go through the LM head: with a long video prompt and a 150k vocabulary
    the full logits would not fit."""
    n, T = completions.shape
    pos, _ = prompt_positions(model, prompt)
    positions = torch.cat([pos.expand(3, n, -1), _continuation_positions(prompt, 0, T, n)], 2)
    attn = torch.cat([torch.ones(n, prompt.length, dtype=torch.long), mask.long()], 1)
    if getattr(model, "veripo_partitioned", False):
        # ZeRO-3 fetches a module's parameters from hooks that expect the model's own call order, so
        # the vision tower runs inside the forward (once per sequence) instead of once per query.
        ids = torch.cat([prompt.input_ids.expand(n, -1), completions], 1)
        types = torch.cat([prompt.mm_token_type_ids.expand(n, -1), torch.zeros_like(completions)], 1)
        media = {k: (v.repeat(n, 1) if k.startswith("pixel") else v.repeat(n, *([1] * (v.dim() - 1))))
                 for k, v in prompt.media.items()}
        logits = model(input_ids=ids, attention_mask=attn, position_ids=positions, mm_token_type_ids=types,
                       use_cache=False, logits_to_keep=T + 1, **media).logits[:, :-1].float()
    else:
        emb = prompt_embeds(model, prompt)
        comp_emb = model.model.get_input_embeddings()(completions)
        inputs = torch.cat([emb.expand(n, -1, -1), comp_emb], 1)
        logits = model(inputs_embeds=inputs, position_ids=positions, attention_mask=attn, use_cache=False,
                       logits_to_keep=T + 1).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / _logprob_temperature(temperature)
    return torch.gather(F.log_softmax(logits, -1), 2, completions.unsqueeze(-1)).squeeze(-1)


def _logprob_temperature(temperature: float) -> float:
    """Greedy decoding (temperature <= 1e-5) has no sampling distribution: its log-probs are the model's own."""
    return 1.0 if temperature <= 1e-5 else temperature


@dataclass
class Rollouts:
    tokens: torch.Tensor  # (n, T) completion ids, padded after the first EOS
    mask: torch.Tensor  # (n, T) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (n, T) sampler's log-probs under softmax(logits / temperature)
    truncated: torch.Tensor  # (n,) bool: hit max_new_tokens without EOS


def suppressed_token_ids(model) -> list[int]:
    """Vision placeholders must never be sampled: a sampled <|video_pad|> breaks the next forward."""
    c = model.config
    return [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id]


def _apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    picked = torch.gather(logits, 1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum - torch.softmax(sorted_logits, -1) > top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


@dataclass
class Prefill:
    """A batch of sequences after its prompt forward: what decoding continues from."""

    logits: torch.Tensor  # (n, V) next-token logits
    cache: object  # the KV cache, one row per sequence
    attn: torch.Tensor  # (n, P) attention mask over the prompt columns
    next_pos: torch.Tensor  # (n,) text position of each row's first generated token (rope delta included)
    history: torch.Tensor  # (n, P) the tokens the repetition penalty sees


@torch.no_grad()
def sample(model, prompt: EncodedPrompt, n: int, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, repetition_penalty: float = 1.0, generator: torch.Generator | None = None,
           eos_ids: list[int] | None = None, pad_id: int = 0) -> Rollouts:
    """Sample ``n`` completions: one prefill of the prompt (vision once), then a KV cache shared by
    copying it n times. temperature <= 1e-5 means greedy."""
    pos, delta = prompt_positions(model, prompt)
    out = model(inputs_embeds=prompt_embeds(model, prompt), position_ids=pos,
                attention_mask=torch.ones(1, prompt.length, dtype=torch.long), use_cache=True, logits_to_keep=1)
    out.past_key_values.batch_repeat_interleave(n)
    prefill = Prefill(logits=out.logits[:, -1].float().expand(n, -1).clone(), cache=out.past_key_values,
                      attn=torch.ones(n, prompt.length, dtype=torch.long),
                      next_pos=(prompt.length + delta.view(-1)[0]).expand(n),
                      history=prompt.input_ids.expand(n, -1))
    return decode_steps(model, prefill, max_new_tokens, temperature, top_p, repetition_penalty, generator,
                        eos_ids, pad_id)


def decode_steps(model, prefill: Prefill, max_new_tokens: int, temperature: float, top_p: float,
                 repetition_penalty: float, generator: torch.Generator | None, eos_ids: list[int] | None,
                 pad_id: int) -> Rollouts:
    """The decoding loop of ``sample`` and ``batch_generate.generate``: one token per row and step
    (``next_tokens``), each fed back at its row's next text position, until every row has ended."""
    device = prefill.logits.device
    eos = torch.tensor(eos_ids if eos_ids is not None else _eos_ids(model), device=device)
    suppress = torch.tensor(suppressed_token_ids(model), device=device)
    logits, cache, attn, history = prefill.logits, prefill.cache, prefill.attn, prefill.history
    n = logits.shape[0]
    tokens, logps = [], []
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        tok, logp = next_tokens(logits, suppress, history, done, temperature, top_p, repetition_penalty,
                                generator, pad_id)
        tokens.append(tok)
        logps.append(logp)
        done = done | torch.isin(tok, eos)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        history = torch.cat([history, tok.unsqueeze(1)], 1)
        attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype, device=device)], 1)
        step_pos = (prefill.next_pos + t).view(1, n, 1).expand(3, n, 1)
        out = model(input_ids=tok.unsqueeze(1), position_ids=step_pos, attention_mask=attn,
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1].float()
    return collect_rollouts(tokens, logps, eos)


def next_tokens(logits: torch.Tensor, suppress: torch.Tensor, history: torch.Tensor, done: torch.Tensor,
                temperature: float, top_p: float, repetition_penalty: float,
                generator: torch.Generator | None, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step for a batch: (next token per row, its log-prob under the model).

    Vision placeholders are suppressed, the repetition penalty sees ``history``, temperature <= 1e-5
    is greedy; finished rows get ``pad_id``. The log-prob is under softmax(logits / temperature), before
    suppression, penalties and top-p: that is what the training forward reproduces."""
    logp_full = F.log_softmax(logits / _logprob_temperature(temperature), -1)
    scores = logits.index_fill(1, suppress, float("-inf"))
    if repetition_penalty != 1.0:
        scores = _apply_repetition_penalty(scores, history, repetition_penalty)
    if temperature <= 1e-5:
        tok = scores.argmax(-1)
    else:
        scores = scores / temperature
        if top_p < 1.0:
            scores = _top_p_filter(scores, top_p)
        tok = torch.multinomial(torch.softmax(scores, -1), 1, generator=generator).squeeze(1)
    tok = torch.where(done, torch.full_like(tok, pad_id), tok)
    return tok, logp_full.gather(1, tok.unsqueeze(1)).squeeze(1)


def collect_rollouts(tokens: list[torch.Tensor], logps: list[torch.Tensor], eos: torch.Tensor) -> Rollouts:
    """Stack the per-step tokens into Rollouts, masked after each row's first EOS (on the CPU)."""
    toks = torch.stack(tokens, 1)
    is_eos = torch.isin(toks, eos)
    length = toks.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], length, dtype=torch.long))
    mask = (torch.arange(length, device=toks.device).unsqueeze(0) <= first.unsqueeze(1)).long()
    return Rollouts(toks.cpu(), mask.cpu(), (torch.stack(logps, 1) * mask).cpu(), (~is_eos.any(1)).cpu())


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
