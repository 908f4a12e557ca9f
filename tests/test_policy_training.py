"""The algorithms on real tensors of the tiny Qwen2.5-VL, with the video in every forward."""
import pytest
import torch

from veripo.train import dpo

from veripo.train import grpo

from veripo.model import policy
from veripo.stage_config import PromptSetup, RunContext

pytestmark = pytest.mark.slow


def encode(processor, record, templates, media):
    return policy.encode_query(processor, record, templates, media, None)


def test_training_forward_matches_generation_logprobs_with_video(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    model.eval()
    prompt = encode(processor, video_set[0], templates, media)
    assert "pixel_values_videos" in prompt.media
    ro = policy.sample(model, prompt, 4, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        forward = policy.completion_logprobs(model, prompt, ro.tokens, ro.mask)
        stripped = policy.EncodedPrompt(prompt.input_ids, {}, prompt.mm_token_type_ids)
        blind = policy.completion_logprobs(model, stripped, ro.tokens, ro.mask)
    m = ro.mask.bool()
    assert (forward - ro.logprobs)[m].abs().max() < 1e-4
    assert (blind - ro.logprobs)[m].abs().max() > 1e-3  # the video matters to these log-probs


def test_ratio_logprobs_are_those_of_the_sampling_temperature(tiny_policy, video_set, templates, media):
    """Rollouts drawn at T come from softmax(logits / T): the training forward at T reproduces the
    sampler's log-probs; the same forward at T = 1 (what the ratio used before) does not."""
    model, processor = tiny_policy
    model.eval()
    prompt = encode(processor, video_set[1], templates, media)
    ro = policy.sample(model, prompt, 4, 16, temperature=0.6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        at_t = policy.completion_logprobs(model, prompt, ro.tokens, ro.mask, temperature=0.6)
        at_1 = policy.completion_logprobs(model, prompt, ro.tokens, ro.mask)
    m = ro.mask.bool()
    assert (at_t - ro.logprobs)[m].abs().max() < 1e-4
    assert (at_1 - ro.logprobs)[m].abs().max() > 1e-2


def test_our_forward_equals_transformers_own_forward(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    model.eval()
    prompt = encode(processor, video_set[1], templates, media)
    ro = policy.sample(model, prompt, 2, 12, generator=torch.Generator().manual_seed(1))
    n = 2
    ids = torch.cat([prompt.input_ids.expand(n, -1), ro.tokens], 1)
    attn = torch.cat([torch.ones(n, prompt.length, dtype=torch.long), ro.mask], 1)
    types = torch.cat([prompt.mm_token_type_ids.expand(n, -1), torch.zeros_like(ro.tokens)], 1)
    mm = {k: (v.repeat(n, 1) if k.startswith("pixel") else v.repeat(n, *([1] * (v.dim() - 1))))
          for k, v in prompt.media.items()}
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn, mm_token_type_ids=types, **mm).logits
        hf = torch.log_softmax(logits[:, prompt.length - 1:-1].float(), -1).gather(2, ro.tokens.unsqueeze(-1))[..., 0]
        ours = policy.completion_logprobs(model, prompt, ro.tokens, ro.mask)
    assert (hf - ours)[ro.mask.bool()].abs().max() < 1e-5


def test_vision_tower_runs_once_per_query(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    calls = []
    hook = model.model.visual.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        model.eval()
        prompt = encode(processor, video_set[2], templates, media)
        ro = policy.sample(model, prompt, 8, 8)
        with torch.no_grad():
            policy.completion_logprobs(model, prompt, ro.tokens, ro.mask)
            policy.completion_logprobs(model, prompt, ro.tokens, ro.mask)
    finally:
        hook.remove()
    assert len(calls) == 1  # frozen-in-eval vision features are shared by 8 rollouts and 2 forwards


def test_sampling_is_reproducible_and_never_emits_vision_tokens(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    model.eval()
    prompt = encode(processor, video_set[3], templates, media)
    a = policy.sample(model, prompt, 8, 24, generator=torch.Generator().manual_seed(5))
    b = policy.sample(model, prompt, 8, 24, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.isin(a.tokens, torch.tensor(policy.suppressed_token_ids(model))).any()


def scripted(processor, texts):
    return policy.pad_completions([policy.encode_completion(processor, t) for t in texts],
                                  processor.tokenizer.pad_token_id)


def test_grpo_step_moves_logprob_towards_positive_advantage(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    prompt = encode(processor, video_set[4], templates, media)
    toks, mask = scripted(processor, ["<think>The background is red. So the answer is A.</think><answer>$A$</answer>",
                                      "<think>The background is blue. So the answer is C.</think><answer>$C$</answer>"])
    adv = grpo.group_advantages(torch.tensor([[1.5, 0.5]]), 1e-6)[0]
    assert adv[0] > 0 > adv[1]
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        lp0 = (policy.completion_logprobs(model, prompt, toks, mask) * mask).sum(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    old = None
    for _ in range(3):
        lp = policy.completion_logprobs(model, prompt, toks, mask)
        old = lp.detach() if old is None else old
        loss, _ = grpo.grpo_loss(lp, old, adv, mask, clip_eps=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        lp1 = (policy.completion_logprobs(model, prompt, toks, mask) * mask).sum(1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert lp1[0] > lp0[0] and lp1[1] < lp0[1]


def test_grpo_loss_clips_and_penalises_kl():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.log(torch.tensor([[0.5, 0.5]]))  # ratio 2 > 1 + eps
    mask = torch.ones(1, 2)
    loss, stats = grpo.grpo_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    loss.backward()
    assert torch.allclose(loss, torch.tensor(-1.2)) and stats["clip_frac"] == 1.0
    assert torch.equal(logp.grad, torch.zeros(1, 2))  # clipped: no gradient
    ref = torch.tensor([[-1.0, 0.0]])
    l2, s2 = grpo.grpo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0.0]), mask, 0.2, ref, kl_coef=0.5)
    k3 = float(torch.exp(torch.tensor(-1.0)) + 1.0 - 1.0) / 2  # mean over the two tokens
    assert abs(s2["kl"] - k3) < 1e-6 and abs(float(l2) - 0.5 * k3) < 1e-6


def test_group_advantages_zero_for_uniform_groups():
    adv = grpo.group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]), 1e-6)
    assert torch.equal(adv[0], torch.zeros(3))
    assert torch.allclose(adv[1], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)


def test_dpo_raises_chosen_over_rejected_margin(tiny_policy, video_set, templates, media):
    model, processor = tiny_policy
    rec = {k: v for k, v in video_set[5].items() if not k.startswith("_")}
    pairs = [{"pair_id": f"p{i}", "query_id": rec["id"], "query": rec,
              "chosen": f"<think>The background is {rec['answer_text']}. So the answer is {rec['answer']}.</think>"
                        f"<answer>${rec['answer']}$</answer>",
              "rejected": "<think>The background is. So the answer is.</think><answer>$Z$</answer>"} for i in range(2)]
    for p in pairs:
        p["chosen_ids"], p["rejected_ids"] = (policy.encode_completion(processor, p[s]).tolist() for s in ("chosen", "rejected"))
    heldout = [dict(pairs[0], pair_id="h0")]
    cfg = dpo.DPOConfig(beta=0.1, lr=1e-3, global_batch=2, epochs=4, nll_coef=0.0, grad_clip=1.0,
                        freeze_vision=True, weight_decay=0.0, seed=0, checkpoint_every=100, heldout_fraction=0.0,
                        min_pairs=1, on_too_few_pairs="stop")
    _, metrics, report = dpo.train_dpo(model, processor, pairs, cfg, PromptSetup(templates, media),
                                       RunContext(stage="dpo"), heldout=heldout)
    assert metrics[0]["margin"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at the first step
    assert metrics[-1]["margin"] > 1.0
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert report["pairs"] == 1 and report["after"]["margin"] > 1.0 and report["after"]["positive_margin_share"] == 1.0
    assert report["after"]["logp_gap"] == pytest.approx(report["before"]["logp_gap"] + report["after"]["margin"], abs=1e-3)


def test_dpo_scores_the_token_ids_the_pair_carries(tiny_policy, video_set, templates, media):
    """A truncated rejected side ends without EOS; DPO scores exactly those ids, never a re-tokenisation."""
    model, processor = tiny_policy
    rec = {k: v for k, v in video_set[2].items() if not k.startswith("_")}
    enc = dpo.PairEncoder(processor, templates, media)
    ids = processor.tokenizer("<think>so the answer is", add_special_tokens=False)["input_ids"]
    pair = {"query_id": rec["id"], "query": rec, "chosen": "unused", "rejected": "unused",
            "chosen_ids": ids + [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")], "rejected_ids": ids}
    toks, mask = enc.completions([pair])
    assert toks[0, : len(ids) + 1].tolist() == pair["chosen_ids"] and int(mask[0].sum()) == len(ids) + 1
    assert toks[1, : len(ids)].tolist() == ids and int(mask[1].sum()) == len(ids)  # no EOS added
    c, r, _ = dpo.summed_logprobs(model, enc, pair)
    lp = policy.completion_logprobs(model, enc.prompt(pair), toks, mask) * mask
    assert float(c) == pytest.approx(float(lp[0].sum()), abs=1e-5) and float(r) == pytest.approx(float(lp[1].sum()), abs=1e-5)


def test_heldout_split_is_by_query_and_seeded():
    pairs = [{"pair_id": f"{q}:{i}", "query_id": q} for q in "abcdefghij" for i in range(2)]
    train, held = dpo.split_heldout(pairs, 0.2, seed=0)
    assert len(held) == 4 and len({p["query_id"] for p in held}) == 2
    assert not {p["query_id"] for p in held} & {p["query_id"] for p in train}
    assert dpo.split_heldout(pairs, 0.2, seed=0) == (train, held)
    assert dpo.split_heldout(pairs, 0.0, seed=0) == (pairs, [])
    assert len(dpo.split_heldout(pairs[:2], 0.5, seed=0)[0]) == 2  # one query: it trains


def test_dpo_loss_values():
    loss, margin = dpo.dpo_loss(torch.tensor(-1.0), torch.tensor(-3.0), torch.tensor(-2.0), torch.tensor(-2.0), 0.1)
    assert float(margin) == pytest.approx(2.0)
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(torch.tensor(0.2))))
