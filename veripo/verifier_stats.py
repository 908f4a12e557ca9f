"""Statistics written next to verdicts and pairs: what the verifier saw in one iteration."""
from __future__ import annotations

from collections import Counter


def verdict_statistics(verdicts: list[dict]) -> dict:
    n = len(verdicts)
    c = Counter()
    judged = Counter()
    for v in verdicts:
        ch = v["checks"]
        c["length_fail"] += not ch["length"]["ok"]
        c["format_fail"] += not ch["format"]["ok"]
        c["repetition_fail"] += not ch["repetition"]["ok"]
        c[f"accuracy_{ch['accuracy']['label']}"] += 1
        c["clean"] += bool(v["clean"])
        judged[ch["consistency"]["verdict"]] += 1
    decided = judged["CONSISTENT"] + judged["INCONSISTENT"]
    return {
        "rollouts": n, "queries": len({v["query_id"] for v in verdicts}), "checks": dict(sorted(c.items())),
        "judge_verdicts": dict(sorted(judged.items())),
        # share of all rollouts the judge marks INCONSISTENT (UNKNOWN counts in the denominator)
        "inconsistency_rate": judged["INCONSISTENT"] / n if n else 0.0,
        "inconsistency_rate_decided": judged["INCONSISTENT"] / decided if decided else 0.0,
    }


def pair_statistics(pairs: list[dict], n_queries: int) -> dict:
    kinds = Counter(p["kind"] for p in pairs)
    return {"pairs": len(pairs), "queries": n_queries, "queries_with_pairs": len({p["query_id"] for p in pairs}),
            "by_kind": dict(sorted(kinds.items())),
            "mean_chars_chosen": sum(len(p["chosen"]) for p in pairs) / len(pairs) if pairs else 0.0,
            "mean_chars_rejected": sum(len(p["rejected"]) for p in pairs) / len(pairs) if pairs else 0.0}
