"""Per-iteration statistics of the verifier (``iterK/verifier/stats.json``, from the verdicts) and of
the pairs (``iterK/dpo/pair_stats.json``, from the pairs): what the verifier saw, what DPO gets."""
from __future__ import annotations

from collections import Counter

from veripo.verify.judges.verdicts import INCONSISTENT, VERDICTS
from veripo.verify.pairs import KINDS, is_chosen


def _mean(values: list) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def verdict_statistics(verdicts: list[dict]) -> dict:
    """Counts per check, the judge's verdicts, the inconsistency rate and think lengths (tokens)."""
    n = len(verdicts)
    checks = {name: Counter({"ok": 0, "fail": 0}) for name in ("length", "format", "repetition")}
    accuracy = Counter({"right": 0, "partial": 0, "wrong": 0})
    consistency = Counter({v: 0 for v in VERDICTS})
    judges = Counter()
    think = {"all": [], "chosen_candidates": [], "others": []}
    for v in verdicts:
        ch = v["checks"]
        for name in checks:
            checks[name]["ok" if ch[name]["ok"] else "fail"] += 1
        accuracy[ch["accuracy"]["label"]] += 1
        consistency[ch["consistency"]["verdict"]] += 1
        judges[ch["consistency"].get("judge", "?")] += 1
        tokens = ch["length"]["think_tokens"]
        think["all"].append(tokens)
        think["chosen_candidates" if is_chosen(v) else "others"].append(tokens)
    decided = consistency["CONSISTENT"] + consistency[INCONSISTENT]
    return {
        "rollouts": n, "queries": len({v["query_id"] for v in verdicts}),
        "clean": sum(bool(v["clean"]) for v in verdicts),
        "checks": {**{k: dict(c) for k, c in checks.items()}, "accuracy": dict(accuracy),
                   "consistency": dict(consistency)},
        "judges": dict(sorted(judges.items())),
        # share of all rollouts the judge marks INCONSISTENT (UNKNOWN, UNPARSABLE count in the denominator)
        "inconsistency_rate": round(consistency[INCONSISTENT] / n, 4) if n else 0.0,
        # the same among rollouts with a CONSISTENT or INCONSISTENT verdict
        "inconsistency_rate_decided": round(consistency[INCONSISTENT] / decided, 4) if decided else 0.0,
        # chosen candidates: right, consistent and clean rollouts (what a pair's chosen side is made of)
        "mean_think_tokens": {k: _mean(t) for k, t in think.items()},
    }


def pair_statistics(pairs: list[dict], n_queries: int, queries_with_chosen: int | None = None,
                    dropped: dict | None = None) -> dict:
    """Pair counts per kind, the candidates dropped (by reason) and the mean think length (tokens) of
    chosen vs rejected, overall and per kind."""
    kinds = Counter({k: 0 for k in KINDS})
    kinds.update(p["kind"] for p in pairs)

    def lengths(ps: list[dict]) -> dict:
        return {"chosen": _mean([p["chosen_think_tokens"] for p in ps]),
                "rejected": _mean([p["rejected_think_tokens"] for p in ps])}

    return {
        "pairs": len(pairs), "queries": n_queries, "queries_with_pairs": len({p["query_id"] for p in pairs}),
        "queries_with_chosen": queries_with_chosen,
        "by_kind": dict(kinds),
        "dropped": {"same_tokens": 0, "reflection_not_well_formed": 0, **dict(dropped or {})},
        "mean_think_tokens": {**lengths(pairs), "by_kind": {k: lengths([p for p in pairs if p["kind"] == k])
                                                           for k in KINDS if kinds[k]}},
        "mean_chars": {"chosen": _mean([len(p["chosen"]) for p in pairs]),
                       "rejected": _mean([len(p["rejected"]) for p in pairs])},
    }
