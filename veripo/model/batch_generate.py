"""Batched forwards: several prompts (each with its own video or image) in one forward per step, for
generation and for the teacher-forced log-probs of one given completion per prompt.

Prompts are left-padded so every row's next token sits in the last column. Each prompt's vision
features go through ``policy.prompt_embeds`` (vision once per prompt); the M-RoPE positions come
from ``veripo.model.positions.rope_index`` on the padded batch, with the attention mask so that padding
takes no position. Decoding then continues every row at its own text position (prompt length + the
row's rope delta + step). Greedy outputs equal ``policy.sample(..., temperature=0)`` run one prompt
at a time, up to float noise on exact logit ties (tests/test_batch_generate.py).
"""
from __future__ import annotations

import torch

from veripo.model import policy
from veripo.model.policy import EncodedPrompt, Rollouts
from veripo.model.positions import rope_index


def _on_device(prompt: EncodedPrompt, device: torch.device) -> EncodedPrompt:
    if prompt.input_ids.device == device:
        return prompt
    media = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in prompt.media.items()}
    return EncodedPrompt(prompt.input_ids.to(device), media, prompt.mm_token_type_ids.to(device))


def _cat_media(prompts: list[EncodedPrompt], key: str) -> torch.Tensor | None:
    parts = [torch.as_tensor(p.media[key]) for p in prompts if key in p.media]
    return torch.cat(parts, 0) if parts else None


def left_pad(prompts: list[EncodedPrompt], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, P) input ids, mm token types and attention mask, prompts right-aligned."""
    width = max(p.length for p in prompts)
    device = prompts[0].input_ids.device
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    types = torch.zeros_like(ids)
    attn = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - p.length:] = p.input_ids[0]
        types[row, width - p.length:] = p.mm_token_type_ids[0]
        attn[row, width - p.length:] = 1
    return ids, types.to(prompts[0].mm_token_type_ids.dtype), attn


def batch_positions(model, prompts: list[EncodedPrompt], ids: torch.Tensor, types: torch.Tensor,
                    attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, B, P) M-RoPE positions of the padded batch (padding at 0) and (B,) rope deltas."""
    pos, delta = rope_index(model.config, ids, types, _cat_media(prompts, "image_grid_thw"),
                            _cat_media(prompts, "video_grid_thw"), _cat_media(prompts, "second_per_grid_ts"),
                            attention_mask=attn)
    return pos, delta.view(-1)


_KINDS = (("video", "pixel_values_videos", "video_grid_thw", "get_video_features"),
          ("image", "pixel_values", "image_grid_thw", "get_image_features"))


def _trained_features(model, prompts: list[EncodedPrompt]) -> list[dict]:
    """Each prompt's vision features with gradients, from one tower call per media kind for the whole
    batch rather than one per prompt. The tower attends within each video or image (its grid rows), so
    the features are those of separate calls."""
    feats: list[dict] = [{} for _ in prompts]
    for kind, pixels_key, grid_key, method in _KINDS:
        rows = [i for i, p in enumerate(prompts) if pixels_key in p.media]
        if not rows:
            continue
        grids = [prompts[i].media[grid_key] for i in rows]
        out = getattr(model.model, method)(torch.cat([prompts[i].media[pixels_key] for i in rows], 0),
                                           torch.cat(grids, 0)).pooler_output  # one tensor per grid row
        start = 0
        for i, grid in zip(rows, grids):
            feats[i][kind] = torch.cat(out[start:start + grid.shape[0]], 0)
            start += grid.shape[0]
    return feats


def _padded_embeds(model, prompts: list[EncodedPrompt], ids: torch.Tensor) -> torch.Tensor:
    """(B, P, D): the pad token's embedding in the padding, each prompt's own embeddings after it."""
    emb = model.model.get_input_embeddings()(ids)
    width = ids.shape[1]
    # A trained tower runs once for the batch; a frozen one's features are cached per prompt, and under
    # lockstep every forward must call it exactly once per prompt (policy.prompt_embeds does both).
    batched = policy.vision_trainable(model) and not policy.lockstep(model)
    feats = _trained_features(model, prompts) if batched else None
    rows = []
    for row, p in enumerate(prompts):
        if batched:
            own = model.model.get_input_embeddings()(p.input_ids)
            own = policy.scatter_features(model, p.input_ids, own, feats[row])
        else:
            own = policy.prompt_embeds(model, p)
        rows.append(torch.cat([emb[row, : width - p.length], own[0]], 0))
    return torch.stack(rows)


def _penalty_history(prompts: list[EncodedPrompt], ids: torch.Tensor) -> torch.Tensor:
    # The repetition penalty must see each row's own prompt only: padding repeats the row's first
    # real token, which is already in its history, so no extra token is penalised.
    history = ids.clone()
    width = ids.shape[1]
    for row, p in enumerate(prompts):
        history[row, : width - p.length] = p.input_ids[0, 0]
    return history


@torch.no_grad()
def generate(model, prompts: list[EncodedPrompt], max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, repetition_penalty: float = 1.0, generator: torch.Generator | None = None,
             eos_ids: list[int] | None = None, pad_id: int = 0, graphs: str = "auto") -> Rollouts:
    """One completion per prompt, all prompts decoded together; temperature <= 1e-5 means greedy.

    Only the prefill differs from ``policy.sample``; the decoding loop is the same one
    (``policy.decode_steps``, ``veripo.model.decode``): vision placeholders suppressed, repetition penalty
    over the prompt and the tokens so far, top-p when sampling. Rows are padded after their first EOS.
    """
    device = next(model.parameters()).device
    prompts = [_on_device(p, device) for p in prompts]
    ids, types, attn = left_pad(prompts, pad_id)
    pos, delta = batch_positions(model, prompts, ids, types, attn)
    out = model(inputs_embeds=_padded_embeds(model, prompts, ids), position_ids=pos, attention_mask=attn,
                use_cache=True, logits_to_keep=1)
    prefill = policy.Prefill(logits=out.logits[:, -1].float(), cache=out.past_key_values, attn=attn,
                             next_pos=torch.tensor([p.length for p in prompts], device=device) + delta.to(device),
                             history=_penalty_history(prompts, ids))
    return policy.decode_steps(model, prefill, max_new_tokens, temperature, top_p, repetition_penalty, generator,
                               eos_ids, pad_id, graphs)


def completion_logprobs(model, prompts: list[EncodedPrompt], completions: list[torch.Tensor],
                        pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) log-probs of each prompt's own completion (1-D token ids) and their (B, T) mask, all
    rows in one forward: prompts left-padded as in ``generate``, completions right-padded after them,
    each continuing at its prompt's own text position. Row b equals ``policy.completion_logprobs`` of
    prompt b alone up to float noise (tests/test_batch_generate.py)."""
    device = policy.model_device(model)
    prompts = [_on_device(p, device) for p in prompts]
    ids, types, attn = left_pad(prompts, pad_id)
    pos, delta = batch_positions(model, prompts, ids, types, attn)
    toks, mask = (t.to(device) for t in policy.pad_completions(completions, pad_id))
    T = toks.shape[1]
    start = torch.tensor([p.length for p in prompts], device=device) + delta.to(device)  # (B,)
    cont = (start.view(-1, 1) + torch.arange(T, device=device)).unsqueeze(0).expand(3, -1, -1)  # (3, B, T)
    emb = torch.cat([_padded_embeds(model, prompts, ids), model.model.get_input_embeddings()(toks)], 1)
    logits = model(inputs_embeds=emb, position_ids=torch.cat([pos, cont], 2),
                   attention_mask=torch.cat([attn, mask.long()], 1), use_cache=False,
                   logits_to_keep=T + 1).logits[:, :-1]
    return policy.token_logprobs(logits, toks), mask
