"""M-RoPE positions (veripo/model/positions.py): Qwen2.5-VL's reference, which vLLM computes.

Equal to transformers' get_rope_index where that one is right (text, images, a video of one frame
group); for a video of several groups, the reference's temporal positions and the text after it. Over a
sweep of video lengths, frame rates and frame budgets the temporal ids are vLLM's own, rounding included
(where Qwen's float32 reference rounds a frame group one apart, how often is printed)."""
import pytest
import torch

from veripo.media import decode as video
from veripo.model import policy
from veripo.model.positions import rope_index


def _prompt(processor, clip=None, image=None):
    text = policy.chat_text(processor, [{"role": "user", "content": [
        *([{"type": "video"}] if clip is not None else []), *([{"type": "image"}] if image is not None else []),
        {"type": "text", "text": "What is shown?"}]}])
    return policy.encode(processor, text, clip, image)


def _hf(model, p):
    m = p.media
    return model.model.get_rope_index(p.input_ids, p.mm_token_type_ids, image_grid_thw=m.get("image_grid_thw"),
                                      video_grid_thw=m.get("video_grid_thw"),
                                      second_per_grid_ts=m.get("second_per_grid_ts"))


def _ours(model, p):
    m = p.media
    return rope_index(model.config, p.input_ids, p.mm_token_type_ids, m.get("image_grid_thw"),
                      m.get("video_grid_thw"), m.get("second_per_grid_ts"))


def test_same_as_transformers_for_one_frame_group_and_images(tiny_policy, video_set, media):
    model, processor = tiny_policy
    path = video_set[0]["video"]
    one_group = video.decode_video(path, 1.0, 2, 2)  # 2 frames: one temporal group
    from PIL import Image

    img = Image.new("RGB", (56, 56), (200, 10, 10))
    for p in (_prompt(processor, one_group), _prompt(processor, image=img), _prompt(processor)):
        if not p.media:
            continue
        (a, da), (b, db) = _hf(model, p), _ours(model, p)
        assert torch.equal(a, b) and torch.equal(da.view(-1), db.view(-1))


@pytest.mark.parametrize("fps", [2.0, 4.0])
def test_several_frame_groups_follow_the_reference(tiny_policy, video_set, fps):
    """fps 2: 1 s per group; fps 4 (TOMATO): 0.5 s per group, which transformers truncates to 0."""
    model, processor = tiny_policy
    clip = video.decode_video(video_set[0]["video"], fps, 4, 8)
    p = _prompt(processor, clip)
    pos, delta = _ours(model, p)
    vid = (p.input_ids[0] == model.config.video_token_id)
    t, h, w = p.media["video_grid_thw"][0].tolist()
    h, w = h // 2, w // 2
    sec = float(p.media["second_per_grid_ts"][0])
    temporal = pos[0, 0, vid].view(t, h * w)
    start = int(pos[0, 0, vid][0])
    expected = [start + int(k * sec * model.config.vision_config.tokens_per_second) for k in range(t)]
    assert temporal[:, 0].tolist() == expected and t > 1
    # the text after the video starts one past the video's largest position
    after = int(vid.nonzero().max()) + 1
    assert int(pos[0, 0, after]) == int(pos[:, 0, vid].max()) + 1
    # decode positions continue the prompt: last prompt position + 1 == prompt length + delta
    assert int(pos[:, 0, -1].max()) + 1 == p.length + int(delta.view(-1)[0])
    hf_pos, _ = _hf(model, p)
    assert not torch.equal(hf_pos, pos)  # what transformers 5.17 gets wrong here


# Temporal positions over a sweep of videos: every length below, at the usual source frame rates (NTSC's
# as the exact ratios PyAV reports), sampled at 1, 2 and 4 fps with the configs' frame budgets
# (config.yaml: 2..8; configs/qwen25vl-7b.yaml: 4..32 in training, 4..128 in evaluation).
SOURCE_FPS = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60000 / 1001, 60.0)
SAMPLED_FPS = (1.0, 2.0, 4.0)
FRAME_BUDGETS = ((2, 8), (4, 32), (4, 128))
TOTAL_FRAMES = (*range(2, 721), *range(721, 108001, 331))  # each up to 30 s at 24 fps, then to 75 min
# Qwen2.5-VL-3B/7B/72B and veripo/model/tiny.py: 2; 25: the example of transformers' get_rope_index
TOKENS_PER_SECOND = (2, 25)


def _sampling(total: int, native_fps: float, fps: float, min_frames: int, max_frames: int) -> video.DecodedVideo:
    """What our decode keeps of a video of ``total`` frames (decode.sample_indices), pixels left out."""
    import numpy as np

    return video.DecodedVideo(np.empty(0), video.sample_indices(total, native_fps, fps, min_frames, max_frames),
                              native_fps, total)


def _sweep() -> list[tuple[int, float]]:
    """(frame groups, seconds per group) of every sweep point, derived as our pipeline derives them: the
    processor divides the temporal patch by the sampled fps of the clip's VideoMetadata (HF side:
    ``DecodedVideo.metadata``; vLLM side: the metadata ``vllm_rollouts.request`` sends, which vLLM turns
    into a VideoMetadata for the same processor) and returns float32 tensors."""
    from transformers import BatchFeature
    from transformers.video_utils import VideoMetadata

    from veripo.model import vllm_rollouts

    groups, seconds = [], []
    for native in SOURCE_FPS:
        for total in TOTAL_FRAMES:
            for fps in SAMPLED_FPS:
                for lo, hi in FRAME_BUDGETS:
                    clip = _sampling(total, native, fps, lo, hi)
                    sampled_fps = clip.metadata().sampled_fps
                    if total % 97 == 0:  # a sample: the vLLM request's metadata gives the same step
                        meta = vllm_rollouts.request("", clip, None)["multi_modal_data"]["video"][0][1]
                        assert VideoMetadata(**meta).sampled_fps == sampled_fps
                    groups.append(len(clip.indices) // video.FRAME_FACTOR)
                    seconds.append(video.FRAME_FACTOR / sampled_fps)
    stored = BatchFeature({"second_per_grid_ts": seconds}, tensor_type="pt")["second_per_grid_ts"]
    assert stored.dtype == torch.float32
    return list(zip(groups, stored.tolist()))


def _group_index(groups: torch.Tensor) -> torch.Tensor:
    """0..t-1 for each video, concatenated."""
    starts = torch.cumsum(groups, 0) - groups
    return torch.arange(int(groups.sum())) - torch.repeat_interleave(starts, groups)


def qwen_reference(k: torch.Tensor, seconds: torch.Tensor, tokens_per_second: int) -> torch.Tensor:
    """Qwen2.5-VL's published algorithm: the group index (int64) times the seconds per group (float32,
    as the processor stores it) gives float32, times tokens per second (float32 again), truncated."""
    return ((k * seconds.float()) * tokens_per_second).long()


def vllm_rounding(k: torch.Tensor, seconds: torch.Tensor, tokens_per_second: int) -> torch.Tensor:
    """vLLM 0.32's, and rope_index's: seconds * tokens_per_second as a Python float, the group index times
    it in float64, truncated."""
    return (k.double() * (seconds.double() * tokens_per_second)).long()


def _reference_apart(pairs: list[tuple[int, float]], tokens_per_second: int) -> list[int]:
    """Which of the videos ``pairs`` (frame groups, seconds per group) Qwen's reference and vLLM round apart."""
    groups = torch.tensor([t for t, _ in pairs])
    k = _group_index(groups)
    seconds = torch.repeat_interleave(torch.tensor([s for _, s in pairs]), groups)
    apart = qwen_reference(k, seconds, tokens_per_second) != vllm_rounding(k, seconds, tokens_per_second)
    return torch.repeat_interleave(torch.arange(len(pairs)), groups)[apart].unique().tolist()


def _temporal_ids(pairs: list[tuple[int, float]], tokens_per_second: int) -> torch.Tensor:
    """rope_index's temporal ids of each video of ``pairs`` (one text token before each, 1x1 merged
    tokens per frame group), all in one row, each relative to its video's first position; concatenated."""
    from types import SimpleNamespace

    config = SimpleNamespace(vision_config=SimpleNamespace(spatial_merge_size=2, tokens_per_second=tokens_per_second))
    groups = torch.tensor([t for t, _ in pairs])
    types = torch.full((int(groups.sum()) + len(pairs),), 2)
    types[torch.cumsum(groups + 1, 0) - groups - 1] = 0
    grid = torch.stack([groups, torch.full_like(groups, 2), torch.full_like(groups, 2)], 1)
    pos, _ = rope_index(config, torch.zeros(1, len(types), dtype=torch.long), types.unsqueeze(0), None, grid,
                        torch.tensor([s for _, s in pairs]))
    temporal = pos[0, 0, types == 2]
    starts = torch.cumsum(groups, 0) - groups
    return temporal - torch.repeat_interleave(temporal[starts], groups)


def test_temporal_positions_over_a_sweep_of_videos(record_property):
    """rope_index's temporal ids are vLLM's at every sweep point; how many points Qwen's float32 reference
    rounds differently (one frame group one apart) is printed and recorded."""
    from collections import Counter

    points = Counter(_sweep())
    pairs = sorted(points)
    groups = torch.tensor([t for t, _ in pairs])
    k = _group_index(groups)
    seconds = torch.repeat_interleave(torch.tensor([s for _, s in pairs]), groups)
    for tps in TOKENS_PER_SECOND:
        ours = _temporal_ids(pairs, tps)
        assert torch.equal(ours, vllm_rounding(k, seconds, tps))
        assert (ours - qwen_reference(k, seconds, tps)).abs().max() <= 1
        apart = _reference_apart(pairs, tps)
        n_apart = sum(points[pairs[i]] for i in apart)
        print(f"tokens_per_second {tps}: {sum(points.values())} sweep points ({len(pairs)} distinct), "
              f"Qwen's float32 reference one id apart at {n_apart} ({len(apart)} distinct), vLLM's rounding at 0")
        record_property(f"reference_apart_tps{tps}", n_apart)
    # one of them: 23.976 fps, 1459 frames at 4 fps, 128 frames: group 61 is 115 in vLLM and here, 116 in
    # the reference
    clip = _sampling(1459, 24000 / 1001, 4.0, 4, 128)
    s = torch.tensor([video.FRAME_FACTOR / clip.metadata().sampled_fps], dtype=torch.float32)
    k = torch.arange(64)
    assert int(vllm_rounding(k, s, 2)[61]) == 115 and int(qwen_reference(k, s, 2)[61]) == 116
    assert int(_temporal_ids([(64, float(s))], 2)[61]) == 115


# Run in the vLLM venv: vLLM's own M-RoPE positions (the model's get_mrope_input_positions, which its CPU
# and GPU model runners call) of one prompt per case. The method reads only the model's config, so the
# class is used without its weights; the video items are built as vLLM builds them from the processor's
# output (MultiModalKwargsItems.from_hf_inputs, second_per_grid_ts a float32 tensor).
VLLM_POSITIONS = r"""
import json, sys
from transformers import BatchFeature, Qwen2_5_VLConfig
from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as Model
from vllm.multimodal.inputs import (MultiModalFeatureSpec, MultiModalFieldConfig, MultiModalKwargsItems,
                                    PlaceholderRange)

fields = {"video_grid_thw": MultiModalFieldConfig.batched("video"),
          "second_per_grid_ts": MultiModalFieldConfig.batched("video", keep_on_cpu=True)}
out = []
for case in json.loads(sys.argv[1]):
    model = Model.__new__(Model)
    object.__setattr__(model, "config", Qwen2_5_VLConfig(vision_config={
        "spatial_merge_size": 2, "tokens_per_second": case["tokens_per_second"]}))
    videos = case["videos"]
    hf = BatchFeature({"video_grid_thw": [v["grid"] for v in videos],
                       "second_per_grid_ts": [v["seconds"] for v in videos]}, tensor_type="pt")
    items = MultiModalKwargsItems.from_hf_inputs(hf, fields)["video"]
    features = [MultiModalFeatureSpec(data=item, modality="video", identifier=str(i),
                                      mm_position=PlaceholderRange(offset=v["offset"], length=v["length"]))
                for i, (item, v) in enumerate(zip(items, videos))]
    positions, delta = model.get_mrope_input_positions([0] * case["length"], features)
    out.append({"positions": positions.tolist(), "delta": int(delta)})
print("RESULT " + json.dumps(out))
"""


def _prompt_with_videos(picked: list[tuple[int, float]]) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One prompt holding the ``picked`` videos (3 text tokens before each, 2 after the last), with
    merged grids of 1x1, 2x1 and 1x3 tokens in turn: (the vLLM case, input ids, mm_token_type_ids)."""
    types, videos = [], []
    for i, (t, s) in enumerate(picked):
        h, w = ((2, 2), (4, 2), (2, 6))[i % 3]
        types += [0] * 3
        videos.append({"grid": [t, h, w], "seconds": s, "offset": len(types), "length": t * h * w // 4})
        types += [2] * (t * h * w // 4)
    types += [0] * 2
    types = torch.tensor([types])
    return {"videos": videos, "length": types.shape[1]}, torch.zeros_like(types), types


def test_positions_equal_vllms_own(vllm_python, vllm_env):
    """Ours equal vLLM's own positions (temporal ids, the text after each video, the decode delta) on
    sweep points where Qwen's float32 reference rounds a frame group differently, and on others."""
    import json
    import subprocess
    from types import SimpleNamespace

    pairs = sorted(set(_sweep()))
    cases, ours = [], []
    for tps in TOKENS_PER_SECOND:
        apart = set(_reference_apart(pairs, tps))
        picked = ([p for i, p in enumerate(pairs) if i in apart][::max(1, len(apart) // 24)][:24]
                  + [p for i, p in enumerate(pairs) if i not in apart][::len(pairs) // 12][:12])
        assert len(picked) == 36
        case, ids, types = _prompt_with_videos(picked)
        cases.append(case | {"tokens_per_second": tps})
        config = SimpleNamespace(vision_config=SimpleNamespace(spatial_merge_size=2, tokens_per_second=tps))
        ours.append(rope_index(config, ids, types, None, torch.tensor([v["grid"] for v in case["videos"]]),
                               torch.tensor([s for _, s in picked])))
    proc = subprocess.run([vllm_python, "-c", VLLM_POSITIONS, json.dumps(cases)], env=vllm_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for (pos, delta), vllm in zip(ours, theirs):
        assert pos[:, 0].tolist() == vllm["positions"]
        assert int(delta.view(-1)[0]) == vllm["delta"]
