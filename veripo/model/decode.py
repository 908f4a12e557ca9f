"""The decoding loop of every HF sampler (``policy.sample``, ``batch_generate.generate``): one token per row
and step after a prefill, drawn on the model's device, until every row has ended.

At 7B on a GPU a decode step is bound by the host, not the GPU (issue 19: ~960 kernel launches and a
host sync per step, a cache grown by ``torch.cat``). So, per call:

- the KV cache is static (``StaticKV``): allocated once for prompt + max_new_tokens and written in place
  at a device-side position; the prompt's prefill cache is copied into it once, to every row;
- tokens, log-probs and the "row ended" flags go into preallocated buffers in place; the repetition
  penalty reads a (rows, vocab) "seen" mask instead of a growing history;
- sampling is on the device and never reads a value back: ``torch.multinomial`` checks its input with a
  host sync, so the draw is its own exponential race (``_draw``: the same tokens and the same generator
  state as multinomial's single-sample path);
- whether every row has ended is read back once every ``CHECK_EVERY`` steps, not per step. The steps
  decoded past the end are dropped and the generator is wound back to where the per-step loop would
  have left it, so a caller sees exactly what the loop before this one returned (tests/test_decode.py
  keeps that loop as the reference).

Attention: a step attends over exactly the filled columns (the cache is sliced to the current length,
a view) with the model's own attention implementation, and with no mask when no row is padded, so
SDPA/flash-attn run their maskless kernels (GQA without copying key/value heads). A CUDA graph needs
static shapes: on CUDA (``graphs="auto"``) each length bucket of ``LENGTH_BUCKET`` columns is captured
once per call (``_GraphStep``), attending over the whole bucket with the unfilled tail masked, through
``grouped_decode_attention``, which keeps GQA without copying heads under a mask. CUDA graphs are not
measured yet (no GPU lent, 2026-12-04); if a capture fails the call continues eager, logged once.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

CHECK_EVERY = 8  # steps between reads of "every row has ended" (the loop's only host sync)
LENGTH_BUCKET = 256  # key columns per CUDA-graph bucket: the masked tail a graphed step attends over
GROUPED_ATTENTION = "veripo_grouped_decode"
GRAPH_MODES = ("auto", "off")
GREEDY_BELOW = 1e-5  # a temperature at or below this decodes greedily


def logprob_temperature(temperature: float) -> float:
    """The temperature of a sampler's log-probs: greedy decoding has no sampling distribution, its
    log-probs are the model's own."""
    return 1.0 if temperature <= GREEDY_BELOW else temperature


@dataclass
class Rollouts:
    tokens: torch.Tensor  # (n, T) completion ids, padded after the first EOS
    mask: torch.Tensor  # (n, T) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (n, T) sampler's log-probs under softmax(logits / temperature)
    truncated: torch.Tensor  # (n,) bool: hit max_new_tokens without EOS


@dataclass
class Prefill:
    """A batch of sequences after its prompt forward: what decoding continues from."""

    logits: torch.Tensor  # (r, V) next-token logits; r = 1 when every row continues the same prompt
    cache: object  # the prefill's DynamicCache, r rows; copied into the static cache, then released
    attn: torch.Tensor  # (n, P) attention mask over the prompt columns (0: left padding)
    next_pos: torch.Tensor  # (n,) text position of each row's first generated token (rope delta included)
    history: torch.Tensor  # (n, P) the tokens the repetition penalty sees


@dataclass(frozen=True)
class Decoding:
    """How one call decodes."""

    max_new_tokens: int
    temperature: float = 1.0  # <= 1e-5: greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    eos_ids: tuple[int, ...] = ()
    pad_id: int = 0  # what a row emits after its EOS
    suppress_ids: tuple[int, ...] = ()  # never sampled (the vision placeholders)
    graphs: str = "auto"  # "auto": CUDA graphs on a CUDA device, eager elsewhere; "off": always eager

    @property
    def greedy(self) -> bool:
        return self.temperature <= GREEDY_BELOW


class StaticKV:
    """Keys and values of n rows, ``length`` columns per layer, allocated once and written in place.

    transformers' attention layers call ``update`` with the step's keys/values: they are written at column
    ``write_at`` (a device tensor, so a CUDA graph replays the write at the current column; ``filled`` is
    the same count on the host) and the layer attends over the first ``visible`` columns. All layers live
    in one tensor, so ``show`` makes every layer's view of those columns with two ops per step, not two
    per layer. ``valid`` (n, length) marks the columns a row may attend to (its prompt without left
    padding, and the columns written so far); it is kept only where a mask is needed (padded prompts,
    bucketed steps)."""

    def __init__(self, prefill_cache, n: int, attn: torch.Tensor, length: int, track_valid: bool):
        P = attn.shape[1]
        first = prefill_cache.layers[0].keys
        # (layers, n, kv heads, length, head dim); zeros: a masked column is never NaN
        self.all_keys, self.all_values = (
            first.new_zeros(len(prefill_cache.layers), n, first.shape[1], length, first.shape[3]) for _ in range(2))
        for i, layer in enumerate(prefill_cache.layers):
            self.all_keys[i, :, :, :P].copy_(layer.keys.expand(n, -1, -1, -1))
            self.all_values[i, :, :, :P].copy_(layer.values.expand(n, -1, -1, -1))
        self.keys, self.values = self.all_keys.unbind(0), self.all_values.unbind(0)
        self.write_at = torch.full((1,), P, dtype=torch.long, device=attn.device)
        self.filled = P
        self.valid = None
        if track_valid:
            self.valid = torch.zeros(n, length, dtype=torch.bool, device=attn.device)
            self.valid[:, :P].copy_(attn.bool())

    def show(self, visible: int) -> None:
        """The next forward attends over the first ``visible`` columns."""
        self.shown = self.all_keys[:, :, :, :visible].unbind(0), self.all_values[:, :, :, :visible].unbind(0)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.write_at, key_states)
        self.values[layer_idx].index_copy_(2, self.write_at, value_states)
        return self.shown[0][layer_idx], self.shown[1][layer_idx]

    def advance(self) -> None:
        """The next step writes the next column."""
        self.write_at.add_(1)
        self.filled += 1

    def mark_written(self) -> None:
        """The column this step writes becomes attendable (before the forward: a token sees itself)."""
        if self.valid is not None:
            self.valid.index_fill_(1, self.write_at, True)


def _layer_masks(model, mask) -> dict:
    """The attention-mask mapping transformers takes as given (no mask is built per step)."""
    kinds = set(model.config.get_text_config().layer_types)
    if kinds != {"full_attention"}:
        raise ValueError(f"the static decoding loop handles full-attention layers only, not {sorted(kinds)}")
    return {"full_attention": mask}


class _EagerStep:
    """A decode forward with the model's own attention over exactly the filled columns."""

    def __init__(self, model, kv: StaticKV, ids: torch.Tensor, pos: torch.Tensor, padded: bool):
        self.model, self.kv, self.ids, self.pos, self.padded = model, kv, ids, pos, padded
        self.impl = model.config.get_text_config()._attn_implementation or "eager"
        self.dtype = next(model.parameters()).dtype

    def _mask(self):
        if not self.padded:
            return None  # every row attends to every filled column: the maskless kernels apply
        valid = self.kv.valid[:, :self.kv.filled + 1]
        if self.impl.startswith("flash"):
            return valid  # flash-attn takes the 2-D padding mask (and unpads with it)
        if self.impl == "eager":
            return torch.where(valid, 0.0, torch.finfo(self.dtype).min).to(self.dtype)[:, None, None, :]
        return valid[:, None, None, :]

    def __call__(self) -> torch.Tensor:
        self.kv.show(self.kv.filled + 1)
        out = self.model(input_ids=self.ids, position_ids=self.pos,
                         attention_mask=_layer_masks(self.model, self._mask()), past_key_values=self.kv, use_cache=True)
        return out.logits[:, -1]


def grouped_decode_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """Attention of one query token per row (a decode step) under a mask, without copying key/value heads:
    the query heads that share a key/value head become that head's query rows. transformers' SDPA path
    repeats every key/value head (x7 at 7B) whenever a mask is given; this keeps the mask's cost to the
    bucket's masked columns. Registered with transformers as ``GROUPED_ATTENTION`` for ``_BucketStep``."""
    n, heads, q_len, dim = query.shape
    if q_len != 1:
        raise ValueError(f"grouped decode attention takes one query token per row, not {q_len}")
    kv_heads = key.shape[1]
    q = query.reshape(n, kv_heads, heads // kv_heads, dim)
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(n, 1, heads, dim), None


class _BucketStep:
    """A decode forward with static shapes, what a CUDA graph captures: attention over the whole length
    bucket holding the current column (``LENGTH_BUCKET`` columns), the unfilled tail masked out, through
    ``grouped_decode_attention``. Outputs are the model's up to float rounding (another attention kernel)."""

    def __init__(self, model, kv: StaticKV, ids: torch.Tensor, pos: torch.Tensor):
        from transformers import AttentionInterface

        AttentionInterface.register(GROUPED_ATTENTION, grouped_decode_attention)
        self.model, self.kv, self.ids, self.pos = model, kv, ids, pos
        self.text_config = model.model.language_model.config

    def bucket_end(self) -> int:
        return min(math.ceil((self.kv.filled + 1) / LENGTH_BUCKET) * LENGTH_BUCKET, self.kv.valid.shape[1])

    def forward(self, end: int) -> torch.Tensor:
        self.kv.show(end)
        mask = self.kv.valid[:, None, None, :end]
        own = self.text_config._attn_implementation
        self.text_config._attn_implementation = GROUPED_ATTENTION
        try:
            out = self.model(input_ids=self.ids, position_ids=self.pos,
                             attention_mask=_layer_masks(self.model, mask), past_key_values=self.kv, use_cache=True)
        finally:
            self.text_config._attn_implementation = own
        return out.logits[:, -1]

    def __call__(self) -> torch.Tensor:
        return self.forward(self.bucket_end())


class _GraphStep(_BucketStep):
    """``_BucketStep`` with each bucket's forward captured once in a CUDA graph and replayed at every step
    in that bucket. CUDA only, unmeasured (no GPU lent, 2026-12-04). Buckets are captured and replayed in
    increasing order, so their graphs share one memory pool; everything is freed when the call ends."""

    def __init__(self, *args):
        super().__init__(*args)
        self.graphs: dict[int, tuple] = {}
        self.pool = None

    def __call__(self) -> torch.Tensor:
        end = self.bucket_end()
        if end not in self.graphs:
            self.graphs[end] = self._capture(end)
        graph, logits = self.graphs[end]
        graph.replay()
        return logits

    def _capture(self, end: int) -> tuple:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuBLAS workspaces); it writes the same column the capture will
            expected = self.forward(end).clone()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.forward(end)
        self.pool = graph.pool()
        # Unmeasured on hardware: a graph that replays stale inputs would sample garbage without an error.
        # The replay redoes the warm-up's step (same column, same values), so it must give its logits; if
        # not, the caller falls back to eager.
        graph.replay()
        if not torch.allclose(logits.float(), expected.float(), rtol=1e-2, atol=1e-2):
            gap = float((logits.float() - expected.float()).abs().max())
            raise RuntimeError(f"the captured decode step's logits differ from the eager step's by up to {gap:.3g}")
        return graph, logits


_graphs_failed = False  # a capture failed in this process: decode eager from then on


def _use_graphs(d: Decoding, device: torch.device) -> bool:
    if d.graphs not in GRAPH_MODES:
        raise ValueError(f"graphs must be one of {GRAPH_MODES}, not {d.graphs!r}")
    return d.graphs == "auto" and device.type == "cuda" and not _graphs_failed


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.multinomial(probs, 1)``'s token per row, without its host-synced validity check: its
    single-sample path is this race (argmax of p / q, q ~ Exp(1)), drawn from the generator alike."""
    return (probs / torch.empty_like(probs).exponential_(1, generator=generator)).argmax(-1, keepdim=True)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum - torch.softmax(sorted_logits, -1) > top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


class _Sampler:
    """One token per row from a step's logits, on the device, reading nothing back (``torch.multinomial``
    would: see ``_draw``).

    Vision placeholders are suppressed, the repetition penalty applies to every token in ``seen`` (the
    prompt and the tokens so far: penalising a token twice changes nothing, so a set is the history),
    temperature <= 1e-5 is greedy; ended rows emit ``pad_id``. The log-prob is under softmax(logits /
    temperature), before suppression, penalties and top-p: what the training forward reproduces."""

    def __init__(self, d: Decoding, history: torch.Tensor, vocab: int, generator: torch.Generator | None):
        dev = history.device
        self.d, self.generator = d, generator
        self.suppress = torch.tensor(d.suppress_ids, dtype=torch.long, device=dev)
        self.eos = torch.tensor(d.eos_ids, dtype=torch.long, device=dev)
        self.pad = torch.tensor(d.pad_id, dtype=torch.long, device=dev)
        self.seen = None
        if d.repetition_penalty != 1.0:
            self.seen = torch.zeros(history.shape[0], vocab, dtype=torch.bool, device=dev).scatter_(1, history, True)

    def __call__(self, logits: torch.Tensor, done: torch.Tensor, tok: torch.Tensor, logp: torch.Tensor) -> None:
        """Write each row's token into ``tok`` (n, 1) and its log-prob into ``logp`` (n, 1); mark the rows
        that met EOS in ``done`` (n, 1). Written in place (``out=``): fewer ops per step."""
        d = self.d
        lt = logprob_temperature(d.temperature)
        logp_full = F.log_softmax(logits if lt == 1.0 else logits / lt, -1)
        scores = logits.index_fill(1, self.suppress, float("-inf"))
        if self.seen is not None:
            p = d.repetition_penalty
            scores = torch.where(self.seen, torch.where(scores > 0, scores / p, scores * p), scores)
        if d.greedy:
            drawn = scores.argmax(-1, keepdim=True)
        else:
            if d.temperature != 1.0:
                scores = scores / d.temperature
            if d.top_p < 1.0:
                scores = _top_p_filter(scores, d.top_p)
            drawn = _draw(torch.softmax(scores, -1), self.generator)
        torch.where(done, self.pad, drawn, out=tok)
        if self.seen is not None:
            self.seen.scatter_(1, tok, True)
        done.logical_or_(torch.isin(tok, self.eos))
        torch.gather(logp_full, 1, tok, out=logp)


def _default_generator(device: torch.device) -> torch.Generator | None:
    """The generator ``generator=None`` draws from on ``device`` (None where torch has no such default)."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return None


@torch.no_grad()
def decode_steps(model, prefill: Prefill, d: Decoding, generator: torch.Generator | None = None) -> Rollouts:
    """Decode every row of ``prefill`` (see the module docstring): Rollouts on the CPU, masked after each
    row's first EOS, as long as the longest row (``max_new_tokens`` when one never ended)."""
    global _graphs_failed
    device = prefill.logits.device
    n, P = prefill.attn.shape
    N = d.max_new_tokens
    rng = None if d.greedy else generator if generator is not None else _default_generator(device)
    padded = not bool(prefill.attn.all())
    length = P + N
    graphs = _use_graphs(d, device)
    if graphs:
        length = math.ceil(length / LENGTH_BUCKET) * LENGTH_BUCKET
    kv = StaticKV(prefill.cache, n, prefill.attn, length, track_valid=padded or graphs)
    prefill.cache = None  # the static cache holds the prompt now
    ids = torch.empty(n, 1, dtype=torch.long, device=device)  # the sampled tokens, the next forward's input
    pos = prefill.next_pos.view(1, n, 1).repeat(3, 1, 1)  # (3, n, 1): text tokens share the three M-RoPE axes
    step = _GraphStep(model, kv, ids, pos) if graphs else _EagerStep(model, kv, ids, pos, padded)
    sampler = _Sampler(d, prefill.history, prefill.logits.shape[-1], rng)
    tokens = torch.empty(N, n, 1, dtype=torch.long, device=device)  # (step, row, 1): a step writes one contiguous block
    logps = torch.empty(N, n, 1, dtype=torch.float32, device=device)
    done = torch.zeros(n, 1, dtype=torch.bool, device=device)
    logits = prefill.logits.float().expand(n, -1)
    rng_at_check = None  # generator state where the steps since the last read of ``done`` began
    steps = 0
    for t in range(N):
        if rng is not None and t % CHECK_EVERY == 0:
            rng_at_check = (t, rng.get_state())
        sampler(logits, done, ids, logps[t])
        tokens[t].copy_(ids)
        steps = t + 1
        if t == N - 1 or (steps % CHECK_EVERY == 0 and bool(done.all())):
            break
        kv.mark_written()
        try:
            out = step()
        except Exception as exc:  # noqa: BLE001 - a failed CUDA-graph capture: the call goes on eager
            if not isinstance(step, _GraphStep):
                raise
            _graphs_failed = True
            log.warning("CUDA graph capture failed (%s: %s): decoding eager from now on", type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")
            step = _EagerStep(model, kv, ids, pos, padded)
            out = step()
        logits = out.float()
        kv.advance()
        pos.add_(1)
    ro = _collect(tokens[:steps, :, 0].cpu().t(), logps[:steps, :, 0].cpu().t(), d.eos_ids)
    if rng is not None and ro.tokens.shape[1] < steps:
        _rewind(rng, rng_at_check, ro.tokens.shape[1], (n, prefill.logits.shape[-1]), device)
    return ro


def _rewind(generator: torch.Generator, at_check: tuple, steps: int, shape: tuple, device) -> None:
    """Leave ``generator`` where a loop that stopped right after step ``steps - 1`` would have: back to the
    state saved at step ``at_check[0]``, then one draw per step up to ``steps``."""
    start, state = at_check
    generator.set_state(state)
    for _ in range(steps - start):
        torch.empty(shape, dtype=torch.float32, device=device).exponential_(1, generator=generator)


def _collect(toks: torch.Tensor, logps: torch.Tensor, eos_ids: tuple[int, ...]) -> Rollouts:
    """Rollouts from the decoded (n, steps) tokens (on the CPU), cut to the step where the last row ended."""
    is_eos = torch.isin(toks, torch.tensor(eos_ids, dtype=toks.dtype))
    ended = is_eos.any(1)
    steps = toks.shape[1]
    first = torch.where(ended, is_eos.int().argmax(1), torch.full_like(ended, steps, dtype=torch.long))
    length = int(first.max()) + 1 if bool(ended.all()) else steps
    toks, logps = toks[:, :length].contiguous(), logps[:, :length]
    mask = (torch.arange(length).unsqueeze(0) <= first.unsqueeze(1)).long()
    return Rollouts(toks, mask, logps * mask, ~ended)
