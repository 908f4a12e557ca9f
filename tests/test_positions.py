"""M-RoPE positions (veripo/model/positions.py): Qwen2.5-VL's reference, which vLLM computes.

Equal to transformers' get_rope_index where that one is right (text, images, a video of one frame
group); for a video of several groups, the reference's temporal positions and the text after it."""
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
