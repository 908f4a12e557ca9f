"""CPU proxies of what bounds a decode step on a GPU (issue 19): aten ops dispatched (each is at least one
kernel launch or a view the host prepares) and host syncs (a value read back, which on a GPU waits for
every queued kernel), per decode step. Side by side in one run, same tiny model, video prompt and G:
transformers' own ``generate``, the loop before (reconstructed below: a growing DynamicCache,
``torch.multinomial``, ``bool(done.all())`` every step) and the loop now (``veripo.model.decode``).

    .venv/bin/python speed/decode_proxies.py [--G 1 --G 8] [--steps 32] [--layers 28]

Per step = (count of a call decoding 9 + steps tokens - count of a call decoding 9) / steps, so the
prefill, the vision tower and the per-call set-up cancel. No row ever meets EOS (EOS id -1 on every
side), so every step decodes every row. tests/test_decode.py asserts the loop now against ``generate``
with the same counter.
"""
from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

aten = torch.ops.aten
# Ops that make the host wait for the device. Counted where a TorchDispatchMode sees them: an op's own
# internals are not dispatched through the mode, hence the ops that sync inside.
SYNC_OPS = {
    aten._local_scalar_dense,  # item(), bool(t), int(t): the value is copied to the host
    aten.is_nonzero,  # bool(t) where not decomposed into the above
    aten.equal,  # returns a Python bool
    aten.nonzero,  # output size depends on the data (bool-mask indexing dispatches it)
    aten.masked_select,  # likewise
    aten._unique2, aten.unique_dim, aten.unique_consecutive,  # likewise
    aten.multinomial,  # checks its input with .item() inside the kernel
}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


def is_sync(func, args, kwargs) -> bool:
    packet = func.overloadpacket
    if packet in SYNC_OPS:
        return True
    if packet is aten.repeat_interleave:  # tensor repeats without output_size: the total is read back
        return func._overloadname in ("Tensor", "self_Tensor") and kwargs.get("output_size") is None
    if packet in _INDEXING:  # a bool mask as index: nonzero inside the kernel
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
    return False


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched inside the block (``ops``) and those that sync (``syncs``)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.syncs: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket.__name__)
        self.ops[name] += 1
        if is_sync(func, args, kwargs):
            self.syncs[name] += 1
        return func(*args, **kwargs)


def count(fn) -> OpCounter:
    with OpCounter() as c:
        fn()
    return c


def _launching(ops: Counter) -> int:
    """Ops that run a kernel: all but views (a view only makes new tensor metadata on the host)."""
    return sum(n for name, n in ops.items() if not _is_view(name))


def _is_view(name: str) -> bool:
    packet = getattr(aten, name)
    return any(getattr(packet, o).is_view for o in packet.overloads())


def per_step(call, steps: int, base: int = 9) -> dict:
    """Ops and syncs per decode step of ``call(new_tokens)``: the difference of two calls over ``steps``
    (after one call that fills what a prompt caches, its vision features)."""
    call(base)
    short, long = count(lambda: call(base)), count(lambda: call(base + steps))
    syncs = long.syncs - short.syncs
    return {"ops": (sum(long.ops.values()) - sum(short.ops.values())) / steps,
            "kernel_ops": (_launching(long.ops) - _launching(short.ops)) / steps,
            "syncs": sum(syncs.values()) / steps, "sync_ops": dict(syncs)}


# --- the loop before (commit bbab257), for the comparison and as tests/test_decode.py's reference ---------

def _penalty_before(logits, seen, penalty):
    picked = torch.gather(logits, 1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def _top_p_before(logits, top_p):
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum - torch.softmax(sorted_logits, -1) > top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


def _next_tokens_before(logits, suppress, history, done, temperature, top_p, penalty, generator, pad_id):
    logp_full = F.log_softmax(logits / (1.0 if temperature <= 1e-5 else temperature), -1)
    scores = logits.index_fill(1, suppress, float("-inf"))
    if penalty != 1.0:
        scores = _penalty_before(scores, history, penalty)
    if temperature <= 1e-5:
        tok = scores.argmax(-1)
    else:
        scores = scores / temperature
        if top_p < 1.0:
            scores = _top_p_before(scores, top_p)
        tok = torch.multinomial(torch.softmax(scores, -1), 1, generator=generator).squeeze(1)
    tok = torch.where(done, torch.full_like(tok, pad_id), tok)
    return tok, logp_full.gather(1, tok.unsqueeze(1)).squeeze(1)


def decode_before(model, logits, cache, attn, next_pos, history, max_new_tokens, temperature, top_p, penalty,
                  generator, eos_ids, pad_id):
    """The decoding loop before issue 19: Rollouts as it returned them."""
    from veripo.model import policy
    from veripo.model.decode import Rollouts

    device = logits.device
    eos = torch.tensor(eos_ids, device=device)
    suppress = torch.tensor(policy.suppressed_token_ids(model), device=device)
    n = logits.shape[0]
    tokens, logps = [], []
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        tok, logp = _next_tokens_before(logits, suppress, history, done, temperature, top_p, penalty, generator,
                                        pad_id)
        tokens.append(tok)
        logps.append(logp)
        done = done | torch.isin(tok, eos)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        history = torch.cat([history, tok.unsqueeze(1)], 1)
        attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype, device=device)], 1)
        step_pos = (next_pos + t).view(1, n, 1).expand(3, n, 1)
        out = model(input_ids=tok.unsqueeze(1), position_ids=step_pos, attention_mask=attn, past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1].float()
    toks = torch.stack(tokens, 1)
    is_eos = torch.isin(toks, eos)
    length = toks.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], length, dtype=torch.long))
    mask = (torch.arange(length, device=device).unsqueeze(0) <= first.unsqueeze(1)).long()
    return Rollouts(toks.cpu(), mask.cpu(), (torch.stack(logps, 1) * mask).cpu(), (~is_eos.any(1)).cpu())


@torch.no_grad()
def sample_before(model, prompt, n, max_new_tokens, temperature=1.0, top_p=1.0, penalty=1.0, generator=None,
                  eos_ids=(-1,), pad_id=0):
    """``policy.sample`` before issue 19."""
    from veripo.model import policy

    pos, delta = policy.prompt_positions(model, prompt)
    dev = prompt.input_ids.device
    out = model(inputs_embeds=policy.prompt_embeds(model, prompt), position_ids=pos,
                attention_mask=torch.ones(1, prompt.length, dtype=torch.long, device=dev), use_cache=True,
                logits_to_keep=1)
    out.past_key_values.batch_repeat_interleave(n)
    return decode_before(model, out.logits[:, -1].float().expand(n, -1).clone(), out.past_key_values,
                         torch.ones(n, prompt.length, dtype=torch.long, device=dev),
                         (prompt.length + delta.view(-1)[0]).expand(n), prompt.input_ids.expand(n, -1),
                         max_new_tokens, temperature, top_p, penalty, generator, list(eos_ids), pad_id)


@torch.no_grad()
def generate_before(model, prompts, max_new_tokens, temperature=0.0, top_p=1.0, penalty=1.0, generator=None,
                    eos_ids=(-1,), pad_id=0):
    """``batch_generate.generate`` before issue 19."""
    from veripo.model import batch_generate as bg

    ids, types, attn = bg.left_pad(prompts, pad_id)
    pos, delta = bg.batch_positions(model, prompts, ids, types, attn)
    out = model(inputs_embeds=bg._padded_embeds(model, prompts, ids), position_ids=pos, attention_mask=attn,
                use_cache=True, logits_to_keep=1)
    next_pos = torch.tensor([p.length for p in prompts], device=ids.device) + delta.to(ids.device)
    return decode_before(model, out.logits[:, -1].float(), out.past_key_values, attn, next_pos,
                         bg._penalty_history(prompts, ids), max_new_tokens, temperature, top_p, penalty, generator,
                         list(eos_ids), pad_id)


# --- the three ways, per decode step -----------------------------------------------------------------------

SETTINGS = {"greedy": dict(temperature=0.0, top_p=1.0), "sampled, top-p 0.9": dict(temperature=1.0, top_p=0.9)}


def hf_generate(model, prompt, G: int, new: int, temperature: float, top_p: float):
    """transformers' ``generate`` on the same prompt, G rows (the prompt repeated: its greedy search takes
    no num_return_sequences), vision ids suppressed, EOS never met."""
    from veripo.model import policy

    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 1e-5 else dict(
        do_sample=False, temperature=None, top_p=None, top_k=None)
    media = {k: v.repeat(G, *([1] * (v.dim() - 1))) for k, v in prompt.media.items()}
    ids = prompt.input_ids.repeat(G, 1)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              mm_token_type_ids=prompt.mm_token_type_ids.repeat(G, 1), **media, max_new_tokens=new,
                              suppress_tokens=policy.suppressed_token_ids(model), eos_token_id=-1, pad_token_id=0,
                              **sampling)


def ways(model, prompt, G: int, temperature: float, top_p: float) -> dict:
    """{name: call(new_tokens)} of the three decoders on one prompt, and the loop now with its forward
    taken out: what the host still dispatches per step once the forward is one CUDA-graph replay."""
    from veripo.model import policy

    gen = torch.Generator().manual_seed(0)

    def now(new):
        return policy.sample(model, prompt, G, new, temperature, top_p, generator=gen, eos_ids=[-1])

    return {
        "transformers generate": lambda new: hf_generate(model, prompt, G, new, temperature, top_p),
        "loop before": lambda new: sample_before(model, prompt, G, new, temperature, top_p, generator=gen),
        "loop now": now,
        "loop now, forward out": lambda new: _without_forward(model, now, new),
    }


def _without_forward(model, call, new: int):
    """``call(new)`` with each decode forward replaced by the same logits, made outside the count."""
    from veripo.model import decode

    logits = torch.zeros(1, model.config.text_config.vocab_size)
    forward = decode._EagerStep.__call__
    decode._EagerStep.__call__ = lambda step: logits.expand(step.ids.shape[0], -1)
    try:
        return call(new)
    finally:
        decode._EagerStep.__call__ = forward


def tiny_video_prompt(work: Path, layers: int | None = None):
    """The tiny model (config.yaml's tiny_model, random weights; ``layers`` text layers if given) and a
    synthetic video prompt."""
    import yaml

    from veripo.data import synthetic
    from veripo.model import policy
    from veripo.model.tiny import build_tiny_qwen25vl

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    spec = dict(cfg["tiny_model"], **({"num_layers": layers} if layers else {}))
    build_tiny_qwen25vl(str(work / "model"), spec, cfg["prompts"].values())
    model, processor = policy.load_policy(str(work / "model"))
    policy.configure_processor(processor, cfg["media"])
    model.eval()
    rec = synthetic.make_video_set(work, 1, seed=3, tasks=["color"], size=64, fps=8, seconds=1.0)[0]
    prompt = policy.encode_query(processor, rec, cfg["prompts"], cfg["media"], str(work))
    return model, prompt


@click.command()
@click.option("--G", "groups", multiple=True, type=int, default=(1, 8), show_default=True, help="rows decoded together")
@click.option("--steps", default=32, show_default=True, help="decode steps measured (a multiple of 8)")
@click.option("--layers", type=int, default=None, help="text layers of the tiny model (7B: 28) [config.yaml's]")
def main(groups, steps, layers):
    import transformers

    from veripo.model import decode

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model, prompt = tiny_video_prompt(Path(tmp), layers)
        print(f"tiny Qwen2.5-VL ({model.config.text_config.num_hidden_layers} text layers), video prompt of "
              f"{prompt.length} tokens, fp32, CPU; per decode step over {steps} steps (read-back every "
              f"{decode.CHECK_EVERY} steps in the loop now)")
        print(f"{'G':>3}  {'setting':<20} {'way':<22} {'aten ops/step':>14} {'of them kernels':>16} "
              f"{'syncs/step':>11}  syncing ops per step")
        for G in groups:
            for setting, kw in SETTINGS.items():
                for name, call in ways(model, prompt, G, **kw).items():
                    r = per_step(call, steps)
                    print(f"{G:>3}  {setting:<20} {name:<22} {r['ops']:>14.1f} {r['kernel_ops']:>16.1f} "
                          f"{r['syncs']:>11.3f}  "
                          + (", ".join(f"{k} {v / steps:.3g}" for k, v in sorted(r["sync_ops"].items())) or "-"))


if __name__ == "__main__":
    main()
