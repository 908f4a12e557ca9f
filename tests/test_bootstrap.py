"""Score files' 95% bootstrap intervals (issue 22, item 3): the vectorised stratified bootstrap of
veripo/eval/bootstrap.py against a direct one, on a known prediction file: the same resamples drawn
one by one, each scored by score_predictions itself."""
import json

import numpy as np
import pytest

from veripo.eval import bootstrap
from veripo.eval.scoring import read_predictions, score_predictions


def _known_vsi_file(path):
    """A VSI-Bench prediction file (our format) with choice and numeric questions over four
    categories, one of them the rel_direction parts the official aggregation folds together."""
    rng = np.random.default_rng(7)
    cats = ["object_counting"] * 60 + ["object_rel_direction_easy"] * 30 + ["object_rel_direction_hard"] * 25 \
        + ["room_size_estimation"] * 45
    rows = []
    for i, cat in enumerate(cats):
        if cat.startswith("object_rel_direction"):
            right = rng.random() < 0.6
            rows.append({"key": f"q{i}", "answer": "B", "answer_type": "multiple_choice", "category": cat,
                         "response": f"<think>look</think><answer>{'B' if right else 'C'}</answer>"})
        else:
            gold = int(rng.integers(2, 20))
            guess = gold + int(rng.integers(-3, 4))
            rows.append({"key": f"q{i}", "answer": str(gold), "answer_type": "numeric", "category": cat,
                         "response": f"<think>count</think><answer>{guess}</answer>"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _direct(items, key, resamples):
    idx = bootstrap.resample_indices([it["category"] for it in items], resamples, bootstrap.SEED)
    values = [score_predictions("vsi_bench", [items[i] for i in row], intervals=False)[key] for row in idx]
    return list(np.percentile(values, [2.5, 97.5]))


def test_score_intervals_equal_a_direct_bootstrap_of_the_official_aggregation(tmp_path):
    items = read_predictions(_known_vsi_file(tmp_path / "p.jsonl"), "vsi_bench")
    result = score_predictions("vsi_bench", items)
    for key, ci in (("overall", "ci95"), ("official_overall", "official_ci95")):
        lo, hi = result[ci]
        assert lo < result[key] < hi
        assert 2 < hi - lo < 25, (key, lo, hi)  # 160 questions: a few points either side
        assert [lo, hi] == pytest.approx(_direct(items, key, bootstrap.RESAMPLES), abs=1e-9)
    # the two aggregations differ here (unequal category sizes), and so do their intervals
    assert result["official_ci95"] != result["ci95"]


def test_paired_difference_resamples_the_same_questions_for_both():
    rng = np.random.default_rng(3)
    cats = ["a"] * 100 + ["b"] * 100
    base = (rng.random(200) < 0.5).astype(float)
    better = base.copy()
    better[rng.choice(200, 20, replace=False)] = 1.0  # the same questions, some more right
    paired = bootstrap.paired_difference(better, base, cats, bootstrap.mean_aggregate)
    assert paired["difference"] == pytest.approx((better.mean() - base.mean()) * 100)
    lo, hi = paired["ci95"]
    assert 0 <= lo < paired["difference"] < hi
    # unpaired, the two scores' own intervals overlap: pairing is what resolves the difference
    a = bootstrap.score_interval(better, cats, bootstrap.mean_aggregate)
    b = bootstrap.score_interval(base, cats, bootstrap.mean_aggregate, seed=1)
    assert a[0] < b[1]
    with pytest.raises(ValueError, match="paired difference"):
        bootstrap.paired_difference(better[:10], base, cats, bootstrap.mean_aggregate)
