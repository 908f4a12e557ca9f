"""Qwen2.5-VL's 3-D (M-RoPE) positions, as the model was trained with them and as vLLM computes them.

Why not the model's own ``get_rope_index``: transformers 5.17's differs from Qwen2.5-VL's reference for
a video of several frame groups, in two ways. (1) It truncates the seconds per frame group to an integer
before multiplying by ``tokens_per_second`` (at TOMATO's 4 fps a group lasts 0.5 s: every frame gets
temporal position 0); the reference multiplies first and truncates the product. (2) After a video it
continues the text at max(h, w) / merge past the video's start; the reference continues one past the
video's largest position, which includes the temporal extent. vLLM computes the reference, and the
released checkpoints were trained with it, so every forward of ours (sampling, training, evaluation)
takes these positions and vLLM and HF see the same model (tests/test_vllm_eval.py).

One rounding differs between the two. Qwen's reference multiplies in float32 in the order
``(group * seconds_per_group) * tokens_per_second``; vLLM 0.32 (``get_mrope_input_positions`` of its
Qwen2.5-VL model, on CPU and GPU alike) multiplies ``group * (seconds_per_group * tokens_per_second)`` in
float64. Where the sampled fps is not a whole number, a product can land on either side of an integer:
one frame group then gets a temporal id one apart (at tokens_per_second 2, about 1 in 120 of the
sampled videos of the sweep in tests/test_positions.py). We take vLLM's rounding: rollouts and
evaluation run through vLLM, and the training forward must score the positions they were sampled with.
"""
from __future__ import annotations

import itertools

import torch


def rope_index(config, input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor,
               image_grid_thw: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
               second_per_grid_ts: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, B, P) positions (padding at 0) and (B, 1) deltas: a text token after the prompt at index i
    sits at position i + delta. ``mm_token_type_ids``: 0 text, 1 image, 2 video (the processor's)."""
    merge = config.vision_config.spatial_merge_size
    tokens_per_second = config.vision_config.tokens_per_second
    device = input_ids.device
    positions = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=device)
    images = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    videos = iter(video_grid_thw.tolist() if video_grid_thw is not None else [])
    seconds = iter(second_per_grid_ts.tolist() if second_per_grid_ts is not None else [])
    deltas = []
    for row in range(input_ids.shape[0]):
        keep = attention_mask[row].bool() if attention_mask is not None else torch.ones_like(input_ids[row], dtype=torch.bool)
        types = mm_token_type_ids[row][keep].tolist()
        parts, next_pos = [], 0
        for kind, run in itertools.groupby(types):
            n = len(list(run))
            if kind == 0:
                parts.append(torch.arange(n, device=device).expand(3, -1) + next_pos)
            else:
                t, h, w = next(images) if kind == 1 else next(videos)
                step = (next(seconds, 1.0) if kind == 2 else 0.0) * tokens_per_second
                h, w = h // merge, w // merge
                if t * h * w != n:
                    raise ValueError(f"{'image' if kind == 1 else 'video'} of grid {t}x{h}x{w} merged tokens "
                                     f"has {n} placeholder tokens")
                # the product truncated, not the seconds (the reference's time_tensor.long()); vLLM's
                # rounding: group * (seconds * tokens_per_second) in float64 (see the module docstring)
                t_idx = (torch.arange(t, device=device, dtype=torch.float64) * step).long()
                grid = torch.stack([t_idx.view(t, 1, 1).expand(t, h, w), torch.arange(h, device=device).view(1, h, 1)
                                    .expand(t, h, w), torch.arange(w, device=device).view(1, 1, w).expand(t, h, w)])
                parts.append(grid.reshape(3, -1) + next_pos)
            next_pos = int(parts[-1].max()) + 1
        row_pos = torch.cat(parts, 1) if parts else torch.zeros(3, 0, dtype=torch.long, device=device)
        positions[:, row, keep] = row_pos
        deltas.append(next_pos - len(types))
    return positions, torch.tensor(deltas, dtype=torch.long, device=device).unsqueeze(1)
