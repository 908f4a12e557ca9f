"""Between iterations, drop a seeded fraction of the "simple" queries: those whose every rollout in
the previous GRPO stage had accuracy reward 1."""
from __future__ import annotations

import os
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


def relocate_media(records: list[dict], out_dir: str) -> list[dict]:
    """Copies of ``records`` whose relative video/image paths point to the same files from ``out_dir``.

    ``load_queries`` resolved them against the run directory; the filtered file is read back from its
    own folder, the next iteration's ``iter<k>/data/``."""
    moved = []
    for rec in records:
        rec = dict(rec)
        for key in ("video", "image"):
            if rec.get(key) and not os.path.isabs(rec[key]):
                rec[key] = os.path.relpath(rec[key], out_dir)
        moved.append(rec)
    return moved


def next_queries(records: list[dict], rollouts: list[dict], fraction: float, seed: int,
                 out_dir: str) -> tuple[list[dict], list[str]]:
    """The next iteration's query file contents, to be written under ``out_dir``, and the dropped ids."""
    kept, dropped = discard_simple(records, rollouts, fraction, seed)
    return relocate_media(kept, out_dir), dropped
