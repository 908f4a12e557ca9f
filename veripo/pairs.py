"""Chosen/rejected pairs from one query's verified rollouts ("O_i => pair" and "O_i + O_j => pair").

chosen: right, consistent, clean (format, length, no repetition); the longest reasoning first, the
next pair takes the next longest (then round again).
- consistency: rejected = a clean rollout that is wrong, or right but judged INCONSISTENT.
- penalty: rejected = a repetitive, too short, truncated or malformed rollout.
- reflection (O_i + O_j): chosen = a wrong rollout's reasoning + the reflection cue + a right rollout's
  reasoning and answer, as one well-formed ``<think>..</think><answer>..</answer>``; rejected = that
  wrong rollout. Only clean wrong rollouts serve (their reasoning is copied into the chosen side).
A rollout judged UNKNOWN or UNPARSABLE, or a partial numeric answer, is never chosen; kinds take turns
in the configured order until ``max_per_query`` pairs or no candidates are left; all-wrong or
all-clean-and-right groups give nothing. Every pair names its kind and the rollouts it was made of.
With ``rotate_kinds`` a query's turn starts at a kind picked by a hash of its id: with fewer pairs
per query than kinds, every kind still gets its share over the data set (otherwise the first kinds
would take all places whenever they have candidates).
"""
from __future__ import annotations

import zlib

from veripo.judges.verdicts import CONSISTENT, INCONSISTENT, answer_text, think_text
from veripo.rewards import is_well_formed

KINDS = ("consistency", "penalty", "reflection")


def is_chosen(v: dict) -> bool:
    c = v["checks"]
    return v["clean"] and c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == CONSISTENT


def rejected_kind(v: dict) -> str | None:
    """Which of consistency/penalty may use this rollout as its rejected side (penalty takes precedence)."""
    c = v["checks"]
    if not v["clean"]:
        return "penalty"
    if c["accuracy"]["label"] == "wrong":
        return "consistency"
    if c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == INCONSISTENT:
        return "consistency"
    return None


def is_reflection_source(v: dict) -> bool:
    """A wrong rollout whose reasoning may open a reflection pair's chosen side."""
    return v["clean"] and v["checks"]["accuracy"]["label"] == "wrong"


def reflection_text(wrong: str, right: str, cue: str) -> str | None:
    """``<think>{wrong reasoning} {cue} {right reasoning}</think><answer>{right answer}</answer>``."""
    w, r, a = think_text(wrong), think_text(right), answer_text(right)
    if not w or not r or a is None:
        return None
    text = f"<think>{w} {cue.strip()} {r}</think><answer>{a}</answer>"
    return text if is_well_formed(text) else None


def kind_order(query_id: str, kinds: list[str], rotate: bool) -> list[str]:
    """The order in which a query's kinds take turns: as configured, or rotated by a stable hash."""
    if not rotate:
        return list(kinds)
    start = zlib.crc32(str(query_id).encode("utf-8")) % len(kinds)
    return list(kinds[start:]) + list(kinds[:start])


def build_pairs(group: list[tuple[dict, dict]], kinds: list[str], max_per_query: int,
                reflection_cue: str | None = None, count_think_tokens=None, rotate_kinds: bool = False) -> list[dict]:
    """``group``: (rollout row, verdict) of one query. Returns pair records.

    ``reflection_cue`` (config ``pairs.reflection_cue``) is needed when ``kinds`` has reflection;
    ``count_think_tokens(think) -> int`` (the policy tokenizer) measures a reflection's chosen think,
    which no verdict has measured; without it the two sources' counts are added.
    """
    if "reflection" in kinds and not reflection_cue:
        raise ValueError("pairs of kind 'reflection' need a reflection cue (config key 'pairs.reflection_cue')")
    chosen = sorted((rv for rv in group if is_chosen(rv[1])),
                    key=lambda rv: (-rv[1]["checks"]["length"]["think_tokens"], rv[0]["rollout"]))
    if not chosen:
        return []
    kinds = kind_order(chosen[0][0]["query_id"], kinds, rotate_kinds)
    pools = {k: [rv for rv in group if rejected_kind(rv[1]) == k] for k in kinds if k != "reflection"}
    if "reflection" in kinds:
        pools["reflection"] = [rv for rv in group if is_reflection_source(rv[1])]
    pairs, used = [], set()
    while len(pairs) < max_per_query and any(pools.values()):
        for kind in kinds:
            if len(pairs) >= max_per_query or not pools[kind]:
                continue
            rej_row, rej_v = pools[kind].pop(0)
            ch_row, ch_v = chosen[len(pairs) % len(chosen)]
            if (kind, ch_row["rollout_id"], rej_row["rollout_id"]) in used:
                continue
            if kind == "reflection":
                text = reflection_text(rej_row["completion"], ch_row["completion"], reflection_cue)
                if text is None:
                    continue
                sources = [rej_row["rollout_id"], ch_row["rollout_id"]]
                chosen_tokens = (count_think_tokens(think_text(text)) if count_think_tokens else
                                 rej_v["checks"]["length"]["think_tokens"] + ch_v["checks"]["length"]["think_tokens"])
            else:
                text, sources = ch_row["completion"], [ch_row["rollout_id"]]
                chosen_tokens = ch_v["checks"]["length"]["think_tokens"]
            used.add((kind, ch_row["rollout_id"], rej_row["rollout_id"]))
            pairs.append({
                "pair_id": f"{ch_row['query_id']}:{kind}:{len(pairs)}", "query_id": ch_row["query_id"],
                "kind": kind, "iteration": ch_row["iteration"],
                "chosen": text, "rejected": rej_row["completion"],
                "chosen_rollout": ch_row["rollout_id"], "rejected_rollout": rej_row["rollout_id"],
                "chosen_sources": sources, "rejected_reasons": rej_v["reasons"], "query": ch_row["query"],
                "chosen_think_tokens": chosen_tokens,
                "rejected_think_tokens": rej_v["checks"]["length"]["think_tokens"],
            })
    return pairs


def dpo_gate(iteration: int, n_pairs: int, min_pairs: int, on_too_few: str) -> dict:
    """Whether iteration ``iteration``'s DPO stage trains: ``train``, or with fewer than ``min_pairs``
    pairs ``stop`` or ``skip`` (config ``dpo.on_too_few_pairs``), with the message saying why."""
    if n_pairs >= min_pairs:
        return {"decision": "train", "message": f"iteration {iteration}: {n_pairs} pairs, DPO trains on them"}
    if on_too_few not in ("stop", "skip"):
        raise ValueError(f"config key 'dpo.on_too_few_pairs' must be stop or skip, not {on_too_few!r}")
    head = (f"iteration {iteration} yielded {n_pairs} DPO pairs, fewer than dpo.min_pairs = {min_pairs} "
            f"(see iter{iteration}/dpo/pair_stats.json)")
    if on_too_few == "stop":
        return {"decision": "stop", "message": f"{head}; stopping as dpo.on_too_few_pairs is 'stop'. Lower "
                                               f"dpo.min_pairs, set dpo.on_too_few_pairs: skip, or get more rollouts."}
    return {"decision": "skip", "message": f"{head}; DPO of iteration {iteration} is skipped "
                                           f"(dpo.on_too_few_pairs: skip): iter{iteration}/dpo/model is its GRPO model."}
