"""Run settings: the config keys that decide how a job runs, never what it computes.

A job's settings are split in two by ``not_in_result``. What shapes the result travels to the job as a
rule's params, which Snakemake compares (its params rerun trigger), and is what a resumed training job or
evaluation compares with the run it continues (veripo/train/checkpoints.py, veripo/eval/job.py). The rest,
the run settings, travel as a param of a type Snakemake does not record (rules/common.smk NotARerunTrigger)
in --run-settings, and the job merges them back (``merged``) before it builds its typed config, so
settings.json still holds every key. One list for both:
a key left out here reruns or refuses a resume for nothing; a key put here wrongly would keep results
that no longer match the config, silently.

Keys are dotted paths in a job's settings, whose sections carry their config.yaml names (``media`` of an
evaluation job is ``eval.media`` with the benchmark's overrides). Why each one is safe:

- ``train.master_port``: where the ranks meet (read by the launcher only).
- ``grpo.checkpoint_every``, ``dpo.checkpoint_every``: how often a step checkpoint is written; writing
  one reads the state and changes none of it.
- ``media.frame_cache``, ``media.frame_cache_max_bytes``: a hit returns the decoded frames pixel for
  pixel (veripo/media/frame_cache.py keys an entry by the video's sha256, the sampling and the decoder's
  identity, and stores uint8 frames losslessly); the bound only decides which entries are evicted.
- ``train.logprob_chunk``: the LM head runs once over the whole sequence; the chunk only slices its
  logits along the positions before each position's own log-softmax (veripo/model/policy.py
  ``token_logprobs``), so every value is the same, and so is every gradient (the slices' gradients are
  summed into zeros). Except with ``train.zero_config: auto`` under DeepSpeed: there it feeds the memory
  plan that picks ZeRO-2 or ZeRO-3, which do not reduce gradients alike.
- ``verifier.judge.timeout_s``, ``retries``, ``backoff_s``: read by the http judge only
  (veripo/verify/judges/openai_http.py), so inert under any other backend.

Not here, although they only look like memory or speed knobs: micro-batch sizes and token budgets
(``grpo.micro_batch``, ``*.micro_batch_tokens``: other forward shapes and summation orders),
``eval.batch_size`` (padding), ``train.gradient_checkpointing`` and ``zero_config`` (other kernels and
reductions), vLLM's ``kv_cache_gib`` (scheduling), resources (world size, and vLLM's cache from mem_mb).

Standard library only: the Snakefile imports it while it parses.
"""
from __future__ import annotations

import copy

# Not in any job's result, whatever the rest of its settings.
ALWAYS = ("train.master_port", "grpo.checkpoint_every", "dpo.checkpoint_every", "media.frame_cache",
          "media.frame_cache_max_bytes")
LOGPROB_CHUNK = "train.logprob_chunk"
# The http judge's connection settings, in the job settings that hold the judge.
HTTP_JUDGE = tuple(f"verifier.judge.{k}" for k in ("timeout_s", "retries", "backoff_s"))


def _get(settings: dict, key: str):
    node = settings
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _has(settings: dict, key: str) -> bool:
    *parents, last = key.split(".")
    node = _get(settings, ".".join(parents)) if parents else settings
    return isinstance(node, dict) and last in node


def not_in_result(settings: dict) -> set[str]:
    """The dotted keys of ``settings`` (a job's settings, or a whole config) that do not change its result."""
    keys = set(ALWAYS)
    train = settings.get("train")
    if isinstance(train, dict) and not (train.get("engine") == "deepspeed" and train.get("zero_config") == "auto"):
        keys.add(LOGPROB_CHUNK)
    if _get(settings, "verifier.judge.backend") not in (None, "http"):
        keys.update(HTTP_JUDGE)
    return {k for k in keys if _has(settings, k)}


def split(settings: dict, root: str = "") -> tuple[dict, dict]:
    """``settings`` as (what shapes the result, the run settings), both nested as ``settings`` is;
    ``root``: the config key ``settings`` is the value of (``verifier`` for the verifier section)."""
    whole = {root: settings} if root else settings
    result, run = copy.deepcopy(whole), {}
    for key in sorted(not_in_result(whole)):
        *parents, last = key.split(".")
        node, into = result, run
        for part in parents:
            node, into = node[part], into.setdefault(part, {})
        into[last] = node.pop(last)
    return (result.get(root, {}), run.get(root, {})) if root else (result, run)


def merge_layers(base: dict, layer: dict) -> dict:
    """``layer`` over ``base`` as Snakemake merges config files: mappings key by key, any other value
    replaced; neither argument is changed."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_layers(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merged(settings: dict, run: dict) -> dict:
    """``settings`` with the run settings ``split`` took out put back in."""
    return merge_layers(settings, run)
