"""The static decoding loop (veripo/model/decode.py) samples exactly the tokens of the loop it replaced, and
costs the host less per step than transformers' ``generate``.

The reference is that loop as it was (commit bbab257: a growing DynamicCache, ``torch.multinomial``,
``bool(done.all())`` every step), reconstructed in speed/decode_proxies.py. Both run on the tiny model in
fp32 on the CPU, with video, image and text prompts, greedy and seeded sampling, G in {1, 4}, and EOS ids
chosen from the reference's own tokens so that some rows end early and others run to max_new_tokens. Tokens, masks and
truncation are compared exactly, log-probs to float noise, and the generator must be left where the
reference left it (a GRPO round draws every query's group from one generator).
"""
import importlib.util

import pytest
import torch

from conftest import ROOT
from veripo import jsonio
from veripo.data import queries, synthetic
from veripo.model import batch_generate, decode, policy
from veripo.model.decode import Rollouts

MAX_NEW = 20


# The loop before, as speed/decode_proxies.py reconstructs it for its before/after figures.
SPEC = importlib.util.spec_from_file_location("decode_proxies", ROOT / "speed" / "decode_proxies.py")
proxies = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(proxies)
reference_sample, reference_generate = proxies.sample_before, proxies.generate_before


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_and_prompts(tiny_dir, media, templates, tmp_path_factory):
    """The tiny policy (eval mode) and a video, an image and a text-only prompt."""
    model, processor = policy.load_policy(tiny_dir)
    policy.configure_processor(processor, media)
    model.eval()
    d = tmp_path_factory.mktemp("decode")
    recs = synthetic.make_video_set(d, 1, seed=3, tasks=["color"], size=64, fps=8, seconds=1.0)
    recs += synthetic.make_activation_set(d, 2, seed=6, size=64)  # text arithmetic, then an image
    jsonio.write_jsonl(d / "q.jsonl", recs)
    video, text, image = queries.load_queries(str(d / "q.jsonl"))
    prompts = {kind: policy.encode_query(processor, rec, templates, media, None)
               for kind, rec in (("video", video), ("image", image), ("text", text))}
    assert "pixel_values_videos" in prompts["video"].media and "pixel_values" in prompts["image"].media
    assert not prompts["text"].media
    return model, processor.tokenizer.pad_token_id, prompts


SETTINGS = {  # temperature, top_p, repetition penalty
    "greedy": (0.0, 1.0, 1.05),
    "sampled": (1.0, 0.9, 1.0),
    "sampled_penalty": (0.7, 1.0, 1.1),
}


def _eos_ending_some_rows(ro: Rollouts) -> list[int]:
    """An EOS id that ends row 0 early (its token at step 3) and that some other row may never meet."""
    return [int(ro.tokens[0, 3])]


def _assert_same(new: Rollouts, ref: Rollouts):
    assert torch.equal(new.tokens, ref.tokens)
    assert torch.equal(new.mask, ref.mask) and torch.equal(new.truncated, ref.truncated)
    assert (new.logprobs - ref.logprobs).abs().max() <= 1e-5


def _seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("G", [1, 4])
@pytest.mark.parametrize("kind", ["video", "image", "text"])
def test_sample_gives_the_tokens_of_the_loop_before(model_and_prompts, kind, G, setting):
    model, pad, prompts = model_and_prompts
    temperature, top_p, penalty = SETTINGS[setting]
    prompt = prompts[kind]
    free = reference_sample(model, prompt, G, MAX_NEW, temperature, top_p, penalty, _seeded(7), [-1], pad)
    for eos in ([-1], _eos_ending_some_rows(free)):
        g_ref, g_new = _seeded(7), _seeded(7)
        ref = reference_sample(model, prompt, G, MAX_NEW, temperature, top_p, penalty, g_ref, eos, pad)
        new = policy.sample(model, prompt, G, MAX_NEW, temperature, top_p, penalty, g_new, eos, pad)
        _assert_same(new, ref)
        assert torch.equal(g_new.get_state(), g_ref.get_state())  # the next query's draws are the same too
        if eos != [-1]:
            assert not ref.truncated[0]


def test_rows_end_early_and_late_in_one_group(model_and_prompts):
    """Seeded sampling, G = 4: rows that meet EOS at different steps, one that never does; the loop stops
    between its reads of "every row ended" and must still return the reference's length."""
    model, pad, prompts = model_and_prompts
    free = reference_sample(model, prompts["video"], 4, MAX_NEW, 1.0, 1.0, 1.0, _seeded(3), [-1], pad)
    # EOS: row 0's token at step 2 and row 1's at step 9, if no other row met them before
    eos = [int(free.tokens[0, 2]), int(free.tokens[1, 9])]
    ref = reference_sample(model, prompts["video"], 4, MAX_NEW, 1.0, 1.0, 1.0, _seeded(3), eos, pad)
    g = _seeded(3)
    new = policy.sample(model, prompts["video"], 4, MAX_NEW, 1.0, 1.0, 1.0, g, eos, pad)
    _assert_same(new, ref)
    assert (~ref.truncated).any() and ref.truncated.any(), ref.tokens
    # every row ended within max_new_tokens: the loop stopped at a check, after the last row's EOS
    eos_all = [int(t) for t in free.tokens[:, 1]]
    g_ref, g_new = _seeded(3), _seeded(3)
    ref = reference_sample(model, prompts["video"], 4, MAX_NEW, 1.0, 1.0, 1.0, g_ref, eos_all, pad)
    new = policy.sample(model, prompts["video"], 4, MAX_NEW, 1.0, 1.0, 1.0, g_new, eos_all, pad)
    assert not ref.truncated.any() and ref.tokens.shape[1] < decode.CHECK_EVERY
    _assert_same(new, ref)
    assert torch.equal(g_new.get_state(), g_ref.get_state())  # wound back from the 8 steps it decoded


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_batch_generate_gives_the_tokens_of_the_loop_before(model_and_prompts, setting):
    """Left-padded prompts of three lengths (video, image, text), one completion each."""
    model, pad, prompts = model_and_prompts
    temperature, top_p, penalty = SETTINGS[setting]
    batch = [prompts["video"], prompts["image"], prompts["text"]]
    assert len({p.length for p in batch}) == 3
    free = reference_generate(model, batch, MAX_NEW, temperature, top_p, penalty, _seeded(5), [-1], pad)
    for eos in ([-1], [int(free.tokens[1, 4])]):
        g_ref, g_new = _seeded(5), _seeded(5)
        ref = reference_generate(model, batch, MAX_NEW, temperature, top_p, penalty, g_ref, eos, pad)
        new = batch_generate.generate(model, batch, MAX_NEW, temperature, top_p, penalty, g_new, eos, pad)
        _assert_same(new, ref)
        assert torch.equal(g_new.get_state(), g_ref.get_state())


def test_draw_is_multinomials_single_sample(model_and_prompts):
    """``_draw`` picks torch.multinomial's token and leaves the generator where multinomial does."""
    for seed in range(50):
        logits = torch.randn(3, 500, generator=_seeded(100 + seed)) * 4
        logits[:, seed:seed + 200] = float("-inf")
        probs = torch.softmax(logits, -1)
        a, b = _seeded(seed), _seeded(seed)
        assert torch.equal(torch.multinomial(probs, 1, generator=a), decode._draw(probs, b))
        assert torch.equal(a.get_state(), b.get_state())


# --- the static-shape step a CUDA graph captures, run eagerly on the CPU ----------------------------------

def test_grouped_attention_equals_sdpa_with_a_mask():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    gen = _seeded(0)
    q, k, v = torch.randn(3, 8, 1, 16, generator=gen), torch.randn(3, 2, 40, 16, generator=gen), torch.randn(
        3, 2, 40, 16, generator=gen)
    mask = torch.rand(3, 1, 1, 40, generator=gen) > 0.3
    mask[:, ..., 0] = True
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 4, True, False
    want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.25)
    got, _ = decode.grouped_decode_attention(module, q, k, v, mask, scaling=0.25)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-6


def test_bucketed_static_step_decodes_the_same_tokens(model_and_prompts, monkeypatch):
    """What a CUDA graph replays (attention over the length bucket, its tail masked, grouped attention,
    the column written at a device-side index), run without capture: greedy tokens as the eager loop's,
    across several buckets (8 columns each here), for one prompt and for left-padded prompts."""
    model, pad, prompts = model_and_prompts
    batch = [prompts["video"], prompts["image"], prompts["text"]]
    eager_one = policy.sample(model, prompts["video"], 2, MAX_NEW, 0.0, 1.0, 1.05, eos_ids=[-1], pad_id=pad)
    eager_batch = batch_generate.generate(model, batch, MAX_NEW, 0.0, 1.0, 1.05, eos_ids=[-1], pad_id=pad)
    monkeypatch.setattr(decode, "LENGTH_BUCKET", 8)
    monkeypatch.setattr(decode, "_use_graphs", lambda d, device: True)
    monkeypatch.setattr(decode, "_GraphStep", decode._BucketStep)
    static_one = policy.sample(model, prompts["video"], 2, MAX_NEW, 0.0, 1.0, 1.05, eos_ids=[-1], pad_id=pad)
    static_batch = batch_generate.generate(model, batch, MAX_NEW, 0.0, 1.0, 1.05, eos_ids=[-1], pad_id=pad)
    assert torch.equal(static_one.tokens, eager_one.tokens) and torch.equal(static_batch.tokens, eager_batch.tokens)
    assert (static_batch.logprobs - eager_batch.logprobs).abs().max() < 1e-4
    assert model.model.language_model.config._attn_implementation == "sdpa"  # restored after every step


def test_graphs_setting_is_checked(model_and_prompts):
    model, pad, prompts = model_and_prompts
    with pytest.raises(ValueError, match="graphs"):
        policy.sample(model, prompts["text"], 1, 2, 0.0, pad_id=pad, graphs="on")


# --- CPU proxies of the host cost of a step (issue 19) ---------------------------------------------------

@pytest.fixture()
def one_thread():
    """Counts do not depend on threads; on a loaded machine two threads per tiny op only add waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_cheaper_than_generate(model, prompt, G: int, settings=tuple(proxies.SETTINGS), steps: int = 16):
    for setting in settings:
        ways = proxies.ways(model, prompt, G, **proxies.SETTINGS[setting])
        hf, before, now = (proxies.per_step(ways[name], steps) for name in
                           ("transformers generate", "loop before", "loop now"))
        where = f"G={G}, {setting}: generate {hf}, before {before}, now {now}"
        assert now["ops"] <= hf["ops"] and now["kernel_ops"] <= hf["kernel_ops"], where
        assert now["kernel_ops"] < before["kernel_ops"], where
        # one read-back ("every row ended?") per 8 steps; the loop before read back 2-3 times per step
        assert now["syncs"] <= 1 / decode.CHECK_EVERY and before["syncs"] >= 2, where


@pytest.mark.parametrize("G", [1, 4])
def test_a_step_dispatches_fewer_ops_than_generate_and_syncs_once_per_8_steps(model_and_prompts, G, one_thread):
    """Per decode step (two calls' difference over 16 steps, video prompt, no row ending): aten ops
    dispatched, those that run a kernel, and host syncs, counted with a TorchDispatchMode."""
    model, _, prompts = model_and_prompts
    _assert_cheaper_than_generate(model, prompts["video"], G)


def test_ops_per_step_stay_below_generate_at_the_7b_layer_count(tmp_path, one_thread):
    """Per-layer cost is what grows with the model: with the 7B's 28 text layers the loop still dispatches
    fewer ops per step than generate (each layer writes its key/value column in place, as many ops as
    generate's torch.cat, and every layer's view of the filled columns comes from one op per step)."""
    model, prompt = proxies.tiny_video_prompt(tmp_path, layers=28)
    _assert_cheaper_than_generate(model, prompt, 2, settings=("greedy",), steps=8)


def test_sync_ops_are_seen_by_the_counter():
    """The counter's sync list catches what the loop before did every step."""
    done = torch.zeros(3, dtype=torch.bool)
    with proxies.OpCounter() as c:
        bool(done.all())
        torch.multinomial(torch.ones(2, 5), 1)
        torch.ones(4)[torch.tensor([True, False, True, True])]
        torch.ones(()).item()
    assert sum(c.syncs.values()) == 4, c.syncs


def test_the_proxy_script_prints_the_three_ways():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "speed" / "decode_proxies.py"), "--G", "1", "--steps", "8"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith("1 ")]
    assert len(rows) == 2 * 4 and all("loop" in " ".join(r) or "transformers" in r for r in rows), proc.stdout
