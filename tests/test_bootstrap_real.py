"""Score files' 95% bootstrap intervals on the real benchmark question files (issue 22, item 3).

tests/test_bootstrap.py checks the vectorised bootstrap on a synthetic file; here every real question
file present (../shared/veripo-data/ or $VERIPO_DATA, via conftest's ``real_benchmark``) goes through
what the eval_score rule runs, ``score_report``: its questions loaded by the project's loader, seeded
model-free predictions in the prediction-file format (right, wrong, unparsable), a baseline checkpoint's
predictions for ``paired``. Each interval must equal a direct stratified bootstrap drawn here one
resample at a time (the draws bootstrap.py documents) and scored by ``score_predictions`` itself, around
the benchmark's official number: VSI-Bench's ``official_overall`` (mean of the 8 categories,
object_rel_direction the mean of its parts) for ``official_ci95``, the accuracy over the questions
(``overall``; Video-MME's per duration in ``categories``) for ``ci95``.

No video is needed: scoring reads the question records only. The direct bootstrap scores 2000
resamples a question at a time, so it runs on a stratified subset of each file (the other questions
listed as skipped in the run info, as a run with missing media has them); the score file's own
aggregation and interval are checked on the whole file too.
"""
from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from veripo import answers
from veripo.eval import bootstrap
from veripo.eval import scoring
from veripo.eval.benchmarks import VSI_CATEGORIES, VSI_REL_DIRECTION_PARTS, load_benchmark
from veripo.eval.predictions import prediction_record
from veripo.eval.report import score_report

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("vsi_bench", "video_mme", "lvbench", "mmvu", "tomato", "video_mmmu")
SUBSET = 600  # questions the direct bootstrap resamples (at least MIN_PER_CATEGORY of every category)
MIN_PER_CATEGORY = 4
JUDGE = {"backend": "rule"}
OURS = {"right": 0.55, "wrong": 0.3}  # the rest unparsable
BASELINE = {"right": 0.4, "wrong": 0.4}


def _rng(benchmark: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(benchmark.encode()), salt])


def _subset(questions: list[dict], rng: np.random.Generator) -> list[dict]:
    """A stratified sample of about SUBSET questions, in file order: every category kept."""
    by_cat: dict = {}
    for i, q in enumerate(questions):
        by_cat.setdefault(q["category"], []).append(i)
    chosen = []
    for cat in sorted(by_cat, key=lambda c: (c is not None, c or "")):
        members = by_cat[cat]
        k = min(len(members), max(MIN_PER_CATEGORY, round(len(members) * SUBSET / len(questions))))
        chosen += list(rng.choice(members, size=k, replace=False))
    return [questions[i] for i in sorted(chosen)]


def _wrong(question: dict, rng: np.random.Generator) -> str:
    gold = question["answer"]
    if question["answer_type"] == "multiple_choice":
        return "A" if gold != "A" else "B"
    if question["answer_type"] == "numeric":  # off by a factor: partial or no MRA credit
        return f"{float(gold) * float(rng.choice([0.3, 0.7, 0.85, 1.1, 1.25, 2.0])):.2f}"
    return "$-98765.4321$"  # math


def _responses(questions: list[dict], rng: np.random.Generator, mix: dict) -> dict[str, str]:
    """key -> a model response: the gold answer, a wrong one, or text no scorer parses."""
    out = {}
    for q in questions:
        u = rng.random()
        if u < mix["right"]:
            gold = q["answer"] if q["answer_type"] != "math" else f"${q['answer']}$"
            out[q["key"]] = f"<think>I watch the video and settle on it.</think><answer>{gold}</answer>"
        elif u < mix["right"] + mix["wrong"]:
            out[q["key"]] = f"<think>I watch the video and settle on it.</think><answer>{_wrong(q, rng)}</answer>"
        else:
            out[q["key"]] = ["I cannot tell from the video.", "<think>hmm</think><answer></answer>",
                             "<think>unsure</think>"][int(rng.integers(3))]
    return out


def _write_predictions(path: Path, questions: list[dict], responses: dict[str, str]) -> str:
    """The prediction file eval_generate writes (one prediction_record per question)."""
    lines = [prediction_record(q, SimpleNamespace(text=responses[q["key"]], num_tokens=17, truncated=False))
             for q in questions]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return str(path)


def _run_info(benchmark: str, skipped: list[dict], root: Path) -> dict:
    return {"benchmark": benchmark, "video_root": str(root), "generation": {"backend": "none"}, "media": {},
            "skipped_questions": [{"key": q["key"], "path": q["video_path"], "reason": "not in the tested subset"}
                                  for q in skipped]}


def _items(questions: list[dict], responses: dict[str, str]) -> list[dict]:
    return [{"key": q["key"], "answer": q["answer"], "answer_type": q["answer_type"], "category": q["category"],
             "response": responses[q["key"]]} for q in questions]


def _direct_resamples(categories: list, resamples: int = 2000, seed: int = 0):
    """Stratified resamples one at a time, drawn as bootstrap.py's docstring says it draws: each
    category in sorted order (None first) its member indices, rng.integers(0, n_c, size=(resamples, n_c))."""
    rng = np.random.default_rng(seed)
    strata = []
    for cat in sorted(set(categories), key=lambda c: (c is not None, c or "")):
        members = [i for i, c in enumerate(categories) if c == cat]
        strata.append((members, rng.integers(0, len(members), size=(resamples, len(members)))))
    for r in range(resamples):
        yield [members[j] for members, draws in strata for j in draws[r]]


def _ci(values: list[float]) -> list[float]:
    return list(np.percentile(values, [2.5, 97.5]))


def _official(benchmark: str, items: list[dict]) -> dict:
    """The benchmark's official numbers computed here, apart from the scorer's aggregation: accuracy
    (x100) over the questions and per category; VSI-Bench the mean of its 8 categories' means."""
    scores = [answers.score_response(i["response"], i["answer"], i["answer_type"]) for i in items]
    by_cat: dict = {}
    for item, s in zip(items, scores):
        if item["category"] is not None:
            by_cat.setdefault(item["category"], []).append(s)
    out = {"overall": 100 * math.fsum(scores) / len(scores),
           "categories": {c: 100 * math.fsum(v) / len(v) for c, v in by_cat.items()}}
    if benchmark == "vsi_bench":
        cats = out["categories"]
        official = {c: cats[c] for c in VSI_CATEGORIES if c in cats}
        official["object_rel_direction"] = math.fsum(cats[p] for p in VSI_REL_DIRECTION_PARTS) / 3
        assert len(official) == 8
        out["official_overall"] = math.fsum(official.values()) / 8
    return out


@pytest.fixture(scope="module")
def real_case(real_benchmark, tmp_path_factory):
    """``real_case(name)``: the real question file of ``name`` scored by score_report on a stratified
    subset (cached per module), with what the test needs to recompute it; skips when the file is absent."""
    cache = {}

    def case(benchmark: str) -> dict:
        if benchmark in cache:
            return cache[benchmark]
        path = real_benchmark(benchmark)
        questions = load_benchmark(benchmark, path)
        tmp = tmp_path_factory.mktemp(f"real_{benchmark}")
        subset = _subset(questions, _rng(benchmark, 0))
        in_subset = {q["key"] for q in subset}
        ours = _responses(questions, _rng(benchmark, 1), OURS)
        base = _responses(questions, _rng(benchmark, 2), BASELINE)
        # the baseline checkpoint answered most of the subset and questions outside it: paired uses the common ones
        rng = _rng(benchmark, 3)
        dropped = {subset[i]["key"] for i in rng.choice(len(subset), size=len(subset) // 20, replace=False)}
        outside = [q for q in questions if q["key"] not in in_subset]
        extra = {outside[i]["key"] for i in rng.choice(len(outside), size=min(len(outside), 15), replace=False)}
        base_questions = [q for q in questions if (q["key"] in in_subset and q["key"] not in dropped)
                          or q["key"] in extra]
        pred = _write_predictions(tmp / f"{benchmark}.predictions.jsonl", subset, ours)
        base_pred = _write_predictions(tmp / f"{benchmark}.base.predictions.jsonl", base_questions, base)
        info = _run_info(benchmark, outside, tmp)
        result = score_report(benchmark, pred, str(path), info, "ckpt", JUDGE, base_pred)
        cache[benchmark] = {"path": path, "questions": questions, "subset": subset, "items": _items(subset, ours),
                            "base_items": _items([q for q in subset if q["key"] not in dropped], base),
                            "ours": ours, "result": result, "tmp": tmp, "pred": pred, "base_pred": base_pred,
                            "info": info}
        return cache[benchmark]

    return case


@pytest.fixture()
def cached_scorer(monkeypatch):
    """score_predictions with score_response memoised (a pure function of response, gold and type):
    the direct bootstrap rescores the same questions 2000 times."""
    monkeypatch.setattr(scoring, "score_response", functools.lru_cache(maxsize=None)(answers.score_response))
    return scoring.score_predictions


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_real_score_intervals_equal_a_direct_bootstrap(benchmark, real_case, cached_scorer):
    case = real_case(benchmark)
    result, items = case["result"], case["items"]
    assert bootstrap.RESAMPLES == 2000 and bootstrap.SEED == 0 and bootstrap.LEVEL == 0.95
    assert result["n"] == len(items) and result["skipped"] == len(case["questions"]) - len(items)

    # (5) the point estimates are the benchmark's official numbers, computed here on their own
    expected = _official(benchmark, items)
    assert result["overall"] == pytest.approx(expected["overall"], abs=1e-9)
    assert result["categories"] == pytest.approx(expected["categories"], abs=1e-9)
    if benchmark == "video_mme":
        assert set(result["categories"]) == {"short", "medium", "long"}  # per duration
    if benchmark == "lvbench":
        assert result["categories"] == {}
    if benchmark == "vsi_bench":
        assert result["official_overall"] == pytest.approx(expected["official_overall"], abs=1e-9)
        assert len(result["official_categories"]) == 8

    # (1), (2) each interval is the direct bootstrap of its aggregation, resample by resample
    keys = [("overall", "ci95")] + ([("official_overall", "official_ci95")] if benchmark == "vsi_bench" else [])
    values: dict = {key: [] for key, _ in keys}
    for row in _direct_resamples([i["category"] for i in items]):
        scored = cached_scorer(benchmark, [items[i] for i in row], intervals=False)
        for key, _ in keys:
            values[key].append(scored[key])
    for key, ci in keys:
        lo, hi = result[ci]
        assert [lo, hi] == pytest.approx(_ci(values[key]), abs=1e-9), (key, ci)
        # (3) around its point estimate, and not degenerate: a few hundred mixed answers
        assert lo < result[key] < hi, (key, lo, result[key], hi)
        assert 3 < hi - lo < 30, (key, lo, hi)
    if benchmark == "vsi_bench":  # the two aggregations differ (unequal category sizes), so do their intervals
        assert result["official_ci95"] != result["ci95"]

    # (4) paired: the same resamples of the questions both answered, for both checkpoints
    paired, base = result["paired"], case["base_items"]
    common = [i for i in items if i["key"] in {b["key"] for b in base}]
    assert paired["baseline"] == case["base_pred"] and paired["n"] == len(common) == len(base) < len(items)
    assert paired["difference"] == pytest.approx(
        cached_scorer(benchmark, common, intervals=False)["overall"]
        - cached_scorer(benchmark, base, intervals=False)["overall"], abs=1e-9)
    diffs = [cached_scorer(benchmark, [common[i] for i in row], intervals=False)["overall"]
             - cached_scorer(benchmark, [base[i] for i in row], intervals=False)["overall"]
             for row in _direct_resamples([i["category"] for i in common])]
    lo, hi = paired["ci95"]
    assert [lo, hi] == pytest.approx(_ci(diffs), abs=1e-9)
    assert lo < paired["difference"] < hi and hi - lo > 1, (lo, paired["difference"], hi)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_real_whole_file_interval_is_around_the_official_number(benchmark, real_benchmark, tmp_path):
    """Every question of the file answered: the score's interval holds its official number and is
    narrower than the subset's, and the official aggregation is the one computed here."""
    path = real_benchmark(benchmark)
    questions = load_benchmark(benchmark, path)
    ours = _responses(questions, _rng(benchmark, 1), OURS)
    pred = _write_predictions(tmp_path / "p.jsonl", questions, ours)
    result = score_report(benchmark, pred, str(path), _run_info(benchmark, [], tmp_path), "ckpt", JUDGE)
    expected = _official(benchmark, _items(questions, ours))
    assert result["n"] == len(questions) and "paired" not in result
    keys = [("overall", "ci95")] + ([("official_overall", "official_ci95")] if benchmark == "vsi_bench" else [])
    for key, ci in keys:
        assert result[key] == pytest.approx(expected[key], abs=1e-9)
        lo, hi = result[ci]
        assert lo < result[key] < hi and 0.5 < hi - lo < 15, (key, lo, result[key], hi)
    if benchmark == "video_mme":  # 900 questions per duration: the official overall is also their mean
        assert result["overall"] == pytest.approx(sum(result["categories"].values()) / 3, abs=1e-9)


def test_real_score_file_written_by_eval_score_script(real_case, tmp_path):
    """The rule's command, scripts/eval_score.py, writes the score_report result (TOMATO: smallest)."""
    case = real_case("tomato")
    run_info = tmp_path / "tomato.run.json"
    run_info.write_text(json.dumps(case["info"]))
    out = tmp_path / "tomato.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_score.py"), "--benchmark", "tomato",
                           "--predictions", case["pred"], "--run-info", str(run_info), "--questions",
                           str(case["path"]), "--model", "ckpt", "--config", json.dumps({"verifier": {"judge": JUDGE}}),
                           "--baseline-predictions", case["base_pred"], "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    for key in ("overall", "ci95", "paired", "categories", "n", "skipped"):
        assert written[key] == case["result"][key], key
