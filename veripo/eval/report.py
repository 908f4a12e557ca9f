"""The score JSON of one benchmark run: VerIPO's scores, the judge's inconsistency rate, skipped
questions and provenance (checkpoint + hash, question file + hash, the settings that generated)."""
from __future__ import annotations

from veripo.eval import provenance

from veripo.verify import verifier
from veripo.eval.scoring import paired_score_difference, read_predictions, score_predictions
from veripo.hashing import sha256_file

SHOWN_SKIPPED = 10


def skipped_keys(run_info: dict) -> list[str]:
    return [entry["key"] for entry in run_info["skipped_questions"]]


def score_report(benchmark: str, predictions: str, questions: str, run_info: dict, checkpoint: str,
                 judge_spec: dict, baseline_predictions: str | None = None) -> dict:
    """Scores of ``predictions``, checked against ``questions``: every question answered exactly once
    unless the generation run skipped it (``run_info``, written by scripts/eval_generate.py); with
    ``baseline_predictions`` (another checkpoint's, on the same questions) the paired difference."""
    skipped = skipped_keys(run_info)
    items = read_predictions(predictions, benchmark, questions, skipped=skipped)
    result = score_predictions(benchmark, items)
    if baseline_predictions is not None:
        result["paired"] = {"baseline": baseline_predictions,
                            **paired_score_difference(items, read_predictions(baseline_predictions, benchmark))}
    judge = verifier.get_judge(judge_spec)
    verdicts = [v["verdict"] for v in judge([item["response"] for item in items], None,
                                                  [item["answer_type"] for item in items])] if items else []
    result["inconsistency"] = {
        "judge": judge_spec["backend"],
        "rate": 100.0 * sum(v == verifier.INCONSISTENT for v in verdicts) / max(1, len(verdicts)),
        "counts": {k: verdicts.count(k) for k in (verifier.CONSISTENT, verifier.INCONSISTENT, verifier.UNKNOWN,
                                                  verifier.UNPARSABLE)},
    }
    result["skipped"] = len(skipped)
    result["skipped_keys"] = skipped[:SHOWN_SKIPPED]
    result["provenance"] = {
        "checkpoint": checkpoint,
        "checkpoint_sha256": provenance.checkpoint_hash(checkpoint),
        "questions": questions,
        "questions_sha256": sha256_file(questions),
        "video_root": run_info["video_root"],
        "generation": run_info["generation"],
        "media": run_info["media"],
    }
    return result
