from veripo.curriculum import discard_simple, simple_query_ids
from veripo.pairs import build_pairs


def verdict(rid, label="right", consistency="CONSISTENT", clean=True, think_tokens=10):
    return {"rollout_id": rid, "query_id": "q", "clean": clean, "reasons": [],
            "checks": {"accuracy": {"label": label}, "consistency": {"verdict": consistency},
                       "length": {"think_tokens": think_tokens}}}


def group(*verdicts):
    return [({"rollout_id": v["rollout_id"], "query_id": "q", "rollout": i, "iteration": 1,
              "completion": f"text of {v['rollout_id']}", "query": {"id": "q"}}, v) for i, v in enumerate(verdicts)]


def test_consistency_pair_prefers_longest_clean_chosen():
    g = group(verdict("r0", think_tokens=5), verdict("r1", think_tokens=30), verdict("r2", label="wrong"))
    pairs = build_pairs(g, ["consistency", "penalty"], 2)
    assert len(pairs) == 1
    p = pairs[0]
    assert (p["kind"], p["chosen_rollout"], p["rejected_rollout"]) == ("consistency", "r1", "r2")
    assert p["chosen"] == "text of r1" and p["rejected"] == "text of r2"


def test_right_but_inconsistent_is_rejected_and_penalty_kind():
    g = group(verdict("r0"), verdict("r1", consistency="INCONSISTENT"), verdict("r2", clean=False))
    kinds = sorted(p["kind"] for p in build_pairs(g, ["consistency", "penalty"], 2))
    assert kinds == ["consistency", "penalty"]


def test_at_most_n_pairs_and_kinds_alternate():
    g = group(verdict("c0"), verdict("c1"), *[verdict(f"w{i}", label="wrong") for i in range(3)],
              *[verdict(f"p{i}", clean=False) for i in range(3)])
    pairs = build_pairs(g, ["consistency", "penalty"], 3)
    assert [p["kind"] for p in pairs] == ["consistency", "penalty", "consistency"]
    assert len({p["pair_id"] for p in pairs}) == 3


def test_no_pairs_without_a_chosen_or_without_a_rejected():
    assert build_pairs(group(verdict("r0", label="wrong"), verdict("r1", clean=False)), ["consistency"], 2) == []
    assert build_pairs(group(verdict("r0"), verdict("r1")), ["consistency", "penalty"], 2) == []
    # unknown consistency is neither chosen nor rejected
    assert build_pairs(group(verdict("r0"), verdict("r1", consistency="UNKNOWN")), ["consistency"], 2) == []
    # partial numeric answers are neither chosen nor rejected
    assert build_pairs(group(verdict("r0"), verdict("r1", label="partial")), ["consistency"], 2) == []


def test_only_configured_kinds():
    g = group(verdict("r0"), verdict("r1", label="wrong"), verdict("r2", clean=False))
    assert [p["kind"] for p in build_pairs(g, ["penalty"], 2)] == ["penalty"]


def rollouts(accs):
    return [{"query_id": q, "reward_accuracy": a} for q, row in accs.items() for a in row]


def test_simple_queries_need_every_rollout_right():
    r = rollouts({"a": [1, 1, 1], "b": [1, 0, 1], "c": [0.9, 1, 1], "d": [1, 1]})
    assert simple_query_ids(r) == ["a", "d"]


def test_discard_fraction_is_seeded_and_rounded():
    recs = [{"id": f"q{i}"} for i in range(10)]
    r = rollouts({f"q{i}": [1, 1] for i in range(5)} | {f"q{i}": [0, 1] for i in range(5, 10)})
    kept, dropped = discard_simple(recs, r, 0.8, seed=0)
    assert len(dropped) == 4 and set(dropped) <= {f"q{i}" for i in range(5)}
    assert [k["id"] for k in kept] == [x["id"] for x in recs if x["id"] not in dropped]
    assert discard_simple(recs, r, 0.8, seed=0)[1] == dropped
    assert discard_simple(recs, r, 0.0, seed=0)[1] == []
    assert len(discard_simple(recs, r, 1.0, seed=0)[1]) == 5
