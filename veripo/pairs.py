"""Chosen/rejected pairs from one query's verified rollouts.

chosen: right, consistent, clean (format, length, no repetition); the longest reasoning first.
consistency pair: rejected = a right-but-inconsistent rollout, or a wrong one.
penalty pair: rejected = a repetitive, truncated or malformed rollout.
At most ``max_per_query`` pairs; kinds alternate in the configured order; all-wrong or all-clean
groups give nothing.
"""
from __future__ import annotations

from veripo.verifier import CONSISTENT, INCONSISTENT

KINDS = ("consistency", "penalty")


def is_chosen(v: dict) -> bool:
    c = v["checks"]
    return v["clean"] and c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == CONSISTENT


def rejected_kind(v: dict) -> str | None:
    """Which pair kind may use this rollout as its rejected side (penalty takes precedence)."""
    c = v["checks"]
    if not v["clean"]:
        return "penalty"
    if c["accuracy"]["label"] == "wrong":
        return "consistency"
    if c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == INCONSISTENT:
        return "consistency"
    return None


def build_pairs(group: list[tuple[dict, dict]], kinds: list[str], max_per_query: int) -> list[dict]:
    """``group``: (rollout row, verdict) of one query. Returns pair records."""
    chosen = sorted((rv for rv in group if is_chosen(rv[1])),
                    key=lambda rv: (-rv[1]["checks"]["length"]["think_tokens"], rv[0]["rollout"]))
    if not chosen:
        return []
    pools = {k: [rv for rv in group if rejected_kind(rv[1]) == k] for k in kinds}
    pairs, used = [], set()
    while len(pairs) < max_per_query and any(pools.values()):
        for kind in kinds:
            if len(pairs) >= max_per_query or not pools[kind]:
                continue
            rej_row, rej_v = pools[kind].pop(0)
            ch_row, ch_v = chosen[len(pairs) % len(chosen)]
            if (ch_row["rollout_id"], rej_row["rollout_id"]) in used:
                continue
            used.add((ch_row["rollout_id"], rej_row["rollout_id"]))
            pairs.append({
                "pair_id": f"{ch_row['query_id']}:{kind}:{len(pairs)}", "query_id": ch_row["query_id"],
                "kind": kind, "iteration": ch_row["iteration"],
                "chosen": ch_row["completion"], "rejected": rej_row["completion"],
                "chosen_rollout": ch_row["rollout_id"], "rejected_rollout": rej_row["rollout_id"],
                "rejected_reasons": rej_v["reasons"], "query": ch_row["query"],
            })
    return pairs
