import pytest

from veripo.data.curriculum import discard_simple, simple_query_ids
from veripo.verify.judges.rule import rule_judge
from veripo.answers import extract_think as think_text
from veripo.verify import pairs as pairs_mod
from veripo.errors import InputError
from veripo.verify.gate import dpo_gate
from veripo.verify.pairs import join_verdicts, kind_order, pair_problems
from veripo.rewards import is_well_formed
from veripo.verify.stats import pair_statistics

CUE = "Wait, let me check again."


def tokenize(text):
    """A stand-in for the policy tokenizer: one id per character, then an EOS (0)."""
    return [ord(c) for c in text] + [0]


def build_pairs(group, kinds, max_per_query, cue=None, count_think_tokens=None, rotate_kinds=False):
    pairs, _ = pairs_mod.build_pairs(group, kinds, max_per_query, cue, count_think_tokens, rotate_kinds, tokenize)
    rows = {r["rollout_id"]: r for r, _ in group}
    verdicts = {v["rollout_id"]: v for _, v in group}
    for p in pairs:  # every pair a test sees is also checked against the invariants
        assert pair_problems(p, rows, verdicts) == [], p
    return pairs


def verdict(rid, label="right", consistency="CONSISTENT", clean=True, think_tokens=10):
    reasons = ([] if clean else ["a 6-gram repeats 3 times"]) + ([] if consistency == "CONSISTENT" else
                                                                 [f"judge: {consistency}"]) + [f"accuracy: {label}"]
    return {"rollout_id": rid, "query_id": "q", "clean": clean, "reasons": reasons,
            "checks": {"accuracy": {"label": label}, "consistency": {"verdict": consistency},
                       "length": {"think_tokens": think_tokens}}}


def row(rid, i, text):
    return {"rollout_id": rid, "query_id": "q", "rollout": i, "iteration": 1, "completion": text,
            "completion_ids": tokenize(text), "query": {"id": "q"}}


def group(*verdicts):
    return [(row(v["rollout_id"], i, f"<think>text of {v['rollout_id']}</think><answer>$B$</answer>"), v)
            for i, v in enumerate(verdicts)]


def test_consistency_pair_prefers_longest_clean_chosen():
    g = group(verdict("r0", think_tokens=5), verdict("r1", think_tokens=30), verdict("r2", label="wrong"))
    pairs = build_pairs(g, ["consistency", "penalty"], 2)
    assert len(pairs) == 1
    p = pairs[0]
    assert (p["kind"], p["chosen_rollout"], p["rejected_rollout"]) == ("consistency", "r1", "r2")
    assert p["chosen"] == g[1][0]["completion"] and p["rejected"] == g[2][0]["completion"]
    assert p["chosen_ids"] == g[1][0]["completion_ids"] and p["rejected_ids"] == g[2][0]["completion_ids"]


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


def test_pairs_name_their_sources_and_think_lengths():
    g = group(verdict("r0", think_tokens=7), verdict("r1", label="wrong", think_tokens=3))
    (p,) = build_pairs(g, ["consistency"], 2)
    assert p["chosen_sources"] == ["r0"] and (p["chosen_think_tokens"], p["rejected_think_tokens"]) == (7, 3)


def texts(**completions):
    """A group whose rollouts have real completions (reflection pairs are made of their text)."""
    labels = {"right": ("right", "CONSISTENT", True), "wrong": ("wrong", "CONSISTENT", True),
              "loop": ("wrong", "CONSISTENT", False)}
    out = []
    for i, (rid, (kind, text)) in enumerate(completions.items()):
        label, cons, clean = labels[kind]
        v = verdict(rid, label=label, consistency=cons, clean=clean, think_tokens=len(think_text(text).split()))
        out.append((row(rid, i, text), v))
    return out


RIGHT = "<think>The square moves to the right, so the answer is B.</think><answer>$B$</answer>"
RIGHT_SHORT = "<think>Right, so the answer is B.</think><answer>$B$</answer>"
WRONG = "<think>The square moves to the left, so the answer is A.</think><answer>$A$</answer>"
LOOP = "<think>left left left left left left</think><answer>$A$</answer>"


def test_reflection_pair_joins_wrong_reasoning_cue_and_right_rollout():
    g = texts(w0=("wrong", WRONG), r0=("right", RIGHT), r1=("right", RIGHT_SHORT))
    (p,) = build_pairs(g, ["reflection"], 2, CUE)
    assert p["kind"] == "reflection"
    assert p["chosen"] == ("<think>The square moves to the left, so the answer is A. Wait, let me check again. "
                           "The square moves to the right, so the answer is B.</think><answer>$B$</answer>")
    assert is_well_formed(p["chosen"]) and rule_judge(p["chosen"])["verdict"] == "CONSISTENT"
    assert p["rejected"] == WRONG and p["rejected_rollout"] == "w0"
    assert p["chosen_rollout"] == "r0"  # the longest right reasoning
    assert p["chosen_sources"] == ["w0", "r0"]  # both rollouts the chosen side is made of
    assert p["chosen_think_tokens"] == 11 + 11  # without a tokenizer: the two sources' think lengths
    assert p["chosen_ids"] == tokenize(p["chosen"]) and p["rejected_ids"] == g[0][0]["completion_ids"]
    (q,) = build_pairs(g, ["reflection"], 2, CUE, count_think_tokens=lambda t: len(t.split()))
    assert q["chosen_think_tokens"] == 11 + 5 + 11


def test_reflection_needs_a_clean_wrong_rollout_and_a_cue():
    g = texts(l0=("loop", LOOP), r0=("right", RIGHT))
    assert build_pairs(g, ["reflection"], 2, CUE) == []  # a repetitive reasoning is not copied into chosen
    assert [p["kind"] for p in build_pairs(g, ["reflection", "penalty"], 2, CUE)] == ["penalty"]
    with pytest.raises(ValueError, match="pairs.reflection_cue"):
        build_pairs(g, ["reflection"], 2)
    with pytest.raises(ValueError, match="tokenizer"):
        pairs_mod.build_pairs(g, ["reflection"], 2, CUE)


def test_all_three_kinds_take_turns_up_to_the_limit():
    g = texts(w0=("wrong", WRONG), r0=("right", RIGHT), l0=("loop", LOOP), r1=("right", RIGHT_SHORT))
    pairs = build_pairs(g, ["consistency", "penalty", "reflection"], 3, CUE)
    assert [p["kind"] for p in pairs] == ["consistency", "penalty", "reflection"]
    assert [p["chosen_rollout"] for p in pairs] == ["r0", "r1", "r0"]  # chosen rotate, longest first
    assert [p["rejected_rollout"] for p in pairs] == ["w0", "l0", "w0"]
    assert len(build_pairs(g, ["consistency", "penalty", "reflection"], 2, CUE)) == 2
    stats = pair_statistics(pairs, n_queries=3, queries_with_chosen=1)
    assert stats["by_kind"] == {"consistency": 1, "penalty": 1, "reflection": 1}
    assert stats["pairs"] == 3 and stats["queries_with_pairs"] == 1 and stats["queries"] == 3
    assert stats["mean_think_tokens"]["by_kind"]["reflection"] == {"chosen": 22.0, "rejected": 11.0}
    assert stats["mean_think_tokens"]["chosen"] == round((11 + 6 + 22) / 3, 2)


def test_rotate_kinds_shares_places_between_kinds():
    kinds = ["consistency", "penalty", "reflection"]
    assert kind_order("q", kinds, rotate=False) == kinds
    starts = {kind_order(f"q{i}", kinds, rotate=True)[0] for i in range(20)}
    assert starts == set(kinds)  # over queries, every kind leads sometimes
    assert kind_order("q2", kinds, rotate=True) == kind_order("q2", kinds, rotate=True)  # stable (no hash seed)
    g = texts(w0=("wrong", WRONG), r0=("right", RIGHT), l0=("loop", LOOP))
    first = kind_order("q", kinds, rotate=True)[:2]
    assert [p["kind"] for p in build_pairs(g, kinds, 2, CUE, rotate_kinds=True)] == first


def test_dpo_gate_decisions():
    assert dpo_gate(1, 5, 5, "stop")["decision"] == "train"
    stop = dpo_gate(2, 3, 50, "stop")
    assert stop["decision"] == "stop" and "iteration 2 yielded 3 DPO pairs, fewer than dpo.min_pairs = 50" in stop["message"]
    skip = dpo_gate(2, 0, 1, "skip")
    assert skip["decision"] == "skip" and "iter2/dpo/model is its GRPO model" in skip["message"]


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


def test_a_candidate_whose_sides_are_the_same_tokens_is_dropped_and_counted():
    g = group(verdict("r0"), verdict("w0", label="wrong"), verdict("w1", label="wrong"))
    g[1][0]["completion_ids"] = list(g[0][0]["completion_ids"])  # same tokens, whatever the verdicts say
    pairs, dropped = pairs_mod.build_pairs(g, ["consistency"], 2)
    assert [p["rejected_rollout"] for p in pairs] == ["w1"] and dropped == {"same_tokens": 1}


def test_a_pair_breaking_the_invariants_is_never_returned(monkeypatch):
    g = group(verdict("r0"), verdict("w0", label="wrong"))
    rows, verdicts = {r["rollout_id"]: r for r, _ in g}, {v["rollout_id"]: v for _, v in g}
    (p,) = build_pairs(g, ["consistency"], 2)
    assert "the chosen side is not its rollout verbatim" in pair_problems({**p, "chosen": "x"}, rows, verdicts)
    swapped = {**p, "chosen_rollout": "w0", "rejected_rollout": "r0", "chosen": p["rejected"], "rejected": p["chosen"],
               "chosen_ids": p["rejected_ids"], "rejected_ids": p["chosen_ids"], "chosen_sources": ["w0"]}
    assert "the chosen rollout is not right, consistent, clean and complete" in pair_problems(swapped, rows, verdicts)
    # a selection bug (here: wrong rollouts counted as chosen) stops the builder instead of writing the pair
    monkeypatch.setattr(pairs_mod, "is_chosen", lambda v: True)
    bad = group(verdict("r0"), verdict("w0", label="wrong", think_tokens=50), verdict("w1", label="wrong"))
    with pytest.raises(AssertionError, match="pair q:consistency:0 breaks the pair invariants: the chosen rollout is not"):
        pairs_mod.build_pairs(bad, ["consistency"], 2)


def test_join_refuses_repeated_ids_and_rollouts_without_verdicts():
    g = group(verdict("r0"), verdict("w0", label="wrong"))
    rows = [dict(r, _line=i + 1) for i, (r, _) in enumerate(g)]
    verdicts = [dict(v, _line=i + 1) for i, (_, v) in enumerate(g)]
    assert {q: len(x) for q, x in join_verdicts(rows, verdicts, "r.jsonl", "v.jsonl").items()} == {"q": 2}
    with pytest.raises(InputError, match=r"r.jsonl, line 3, field 'rollout_id': duplicate rollout_id 'r0' \(first on line 1\)"):
        join_verdicts(rows + [dict(rows[0], _line=3)], verdicts, "r.jsonl", "v.jsonl")
    with pytest.raises(InputError, match=r"v.jsonl, line 3, field 'rollout_id': duplicate rollout_id 'w0'"):
        join_verdicts(rows, verdicts + [dict(verdicts[1], _line=3)], "r.jsonl", "v.jsonl")
    with pytest.raises(InputError, match=r"r.jsonl, line 2, field 'rollout_id': 1 rollouts have no verdict"):
        join_verdicts(rows, verdicts[:1], "r.jsonl", "v.jsonl")
