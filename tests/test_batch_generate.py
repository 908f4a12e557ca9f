"""Batched greedy generation equals one-by-one ``policy.sample(..., temperature=0)`` on the tiny model.

Token ids are compared exactly. Left padding only adds masked key positions, so a real position's
logits differ from the unbatched ones by float noise (~1e-6 here, see the log-prob check); greedy
would only flip on two logits tied within that noise, which these inputs do not have. Should it ever
happen, the two outputs agree up to the tied step and diverge after it.
"""
import pytest
import torch

from veripo import jsonio

from veripo.model import batch_generate

from veripo.eval import inputs as eval_inputs

from veripo.model import policy

from veripo.data import queries

from veripo.data import synthetic

MAX_NEW = 24
PENALTY = 1.05


@pytest.fixture(scope="module")
def mixed_records(tmp_path_factory):
    """Video questions of three tasks (three prompt lengths), a still image, and text only."""
    d = tmp_path_factory.mktemp("mixed")
    recs = synthetic.make_video_set(d, 3, seed=4, tasks=["direction", "color", "count"], size=64, fps=8, seconds=1.0)
    recs += [r for r in synthetic.make_activation_set(d, 2, seed=6, size=64)]  # text arithmetic, then an image
    jsonio.write_jsonl(d / "q.jsonl", recs)
    return queries.load_queries(str(d / "q.jsonl"))


def video_and_image_prompt(processor, record, templates, media):
    """A VideoMMMU-style prompt: the video, then an inline base64 image, then the text."""
    from veripo.data.synthetic_benchmarks import _png_base64

    question = {"key": "mmmu", "video_path": record["video"], "question": "How many squares are there?",
                "answer": "2", "answer_type": "math",
                "raw": {"image": _png_base64({"direction": "up", "color": "red", "count": 2}, 64)}}
    inp = eval_inputs.prepare(processor, question, "", media, templates)
    return policy.encode(processor, inp.text, inp.video, inp.image)


def completions(ro, row):
    return ro.tokens[row][ro.mask[row].bool()]


def test_batched_greedy_equals_one_by_one(tiny_policy, mixed_records, templates, media):
    model, processor = tiny_policy
    model.eval()
    pad = processor.tokenizer.pad_token_id
    prompts = [policy.encode_query(processor, r, templates, media, None) for r in mixed_records]
    prompts.append(video_and_image_prompt(processor, mixed_records[0], templates, media))
    assert len({p.length for p in prompts}) >= 4  # padding is really exercised
    assert {"pixel_values_videos", "pixel_values"} <= set(prompts[-1].media)
    singles = [policy.sample(model, p, 1, MAX_NEW, 0.0, 1.0, PENALTY, pad_id=pad) for p in prompts]
    batched = batch_generate.generate(model, prompts, MAX_NEW, 0.0, 1.0, PENALTY, pad_id=pad)
    for row, single in enumerate(singles):
        assert torch.equal(completions(single, 0), completions(batched, row)), row
        assert bool(single.truncated[0]) == bool(batched.truncated[row])
        m = single.mask[0].bool()
        assert (single.logprobs[0][m] - batched.logprobs[row][: m.shape[0]][m]).abs().max() < 1e-4
    # any grouping of the same prompts gives the same answers
    pair = batch_generate.generate(model, [prompts[4], prompts[0]], MAX_NEW, 0.0, 1.0, PENALTY, pad_id=pad)
    assert torch.equal(completions(pair, 0), completions(singles[4], 0))
    assert torch.equal(completions(pair, 1), completions(singles[0], 0))


def test_batched_sampling_never_emits_vision_tokens(tiny_policy, mixed_records, templates, media):
    model, processor = tiny_policy
    prompts = [policy.encode_query(processor, r, templates, media, None) for r in mixed_records[:3]]
    ro = batch_generate.generate(model, prompts, 16, 1.0, 0.9, 1.0, generator=torch.Generator().manual_seed(0),
                                 pad_id=processor.tokenizer.pad_token_id)
    assert ro.tokens.shape[0] == 3
    assert not torch.isin(ro.tokens, torch.tensor(policy.suppressed_token_ids(model))).any()


def test_batched_completion_logprobs_equal_one_by_one_with_their_gradients(tiny_policy, mixed_records, templates,
                                                                           media):
    """The warm-up's batched teacher forcing: each row's log-probs and the gradient of their sum equal
    those of its prompt alone, with prompts and completions of different lengths and the vision tower
    trained."""
    model, processor = tiny_policy
    pad = processor.tokenizer.pad_token_id
    for p in model.parameters():
        p.requires_grad_(True)
    prompts = [policy.encode_query(processor, r, templates, media, None) for r in mixed_records]
    texts = ["<think> the square moves left </think><answer> $A$ </answer>", "<think> red </think><answer> $B$ </answer>",
             "<think> two squares </think><answer> $2$ </answer>", "<think> 3 + 4 = 7 </think><answer> $7$ </answer>",
             "<think> one </think><answer> $1$ </answer>"]
    comps = [policy.encode_completion(processor, t) for t in texts[: len(prompts)]]
    assert len({p.length for p in prompts}) >= 3 and len({len(c) for c in comps}) >= 3
    model.zero_grad()
    lp, mask = batch_generate.completion_logprobs(model, prompts, comps, pad)
    (lp * mask).sum().backward()
    batched_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total = 0.0
    for row, (prompt, comp) in enumerate(zip(prompts, comps)):
        single = policy.completion_logprobs(model, prompt, comp.view(1, -1), torch.ones(1, len(comp), dtype=torch.long))
        assert mask[row].sum() == len(comp) and not mask[row, len(comp):].any()
        assert (single[0] - lp[row, : len(comp)]).abs().max() < 1e-4, row
        total = total + single.sum()
    total.backward()
    assert any("visual" in n for n in batched_grads)  # the vision tower is in the batched graph
    for n, p in model.named_parameters():
        assert torch.allclose(batched_grads[n], p.grad, atol=1e-4, rtol=1e-3), n
