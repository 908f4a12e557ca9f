"""Between iterations, drop a seeded fraction of the "simple" queries: those whose every rollout in
the previous GRPO stage had accuracy reward 1."""
from __future__ import annotations

import random
from collections import defaultdict


def simple_query_ids(rollouts: list[dict]) -> list[str]:
    acc = defaultdict(list)
    for r in rollouts:
        acc[r["query_id"]].append(r["reward_accuracy"])
    return sorted(q for q, a in acc.items() if a and min(a) >= 1.0)


def discard_simple(records: list[dict], rollouts: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[str]]:
    """(kept records in their order, dropped ids). round(fraction * #simple) simple ones are dropped."""
    simple = simple_query_ids(rollouts)
    n_drop = int(round(fraction * len(simple)))
    dropped = set(random.Random(seed).sample(simple, n_drop)) if n_drop else set()
    return [r for r in records if r["id"] not in dropped], sorted(dropped)
