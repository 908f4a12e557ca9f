"""The Snakemake workflow end to end on the tiny default (a shortened chain), and its DAG."""
import copy
import json
import shutil
from pathlib import Path

import pytest

# small_config, snakemake, job_counts and jsonl live in conftest; other tests import them from here too.
from conftest import job_counts, jsonl, small_config, snakemake  # noqa: F401


def test_dry_run_unrolls_three_iterations(tmp_path, default_config):
    out = snakemake(tmp_path, default_config, "-n", "iter3/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout + out.stderr) == {"base_build_tiny": 1, "data_synthetic": 1, "base_warmup": 1, "grpo_train": 4,
                      "curriculum_filter": 2, "verifier_judge": 3, "dpo_build_pairs": 3, "dpo_train": 3,
                      # base's generation too: iter3's score takes its paired difference to it
                      "eval_generate": 2, "eval_score": 1, "total": 21}


def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, default_config):
    cfg = copy.deepcopy(default_config)
    cfg["grpo"]["rollouts_per_query"] = 1
    out = snakemake(tmp_path, cfg, "-n", "iter1/eval/vsi_bench.json")
    assert out.returncode != 0
    assert "grpo.rollouts_per_query" in out.stdout + out.stderr


ROLLOUT_FIELDS = {"rollout_id", "group_id", "query_id", "rollout", "stage", "iteration", "epoch", "round", "completion",
                  "completion_ids", "num_tokens", "truncated", "reward_accuracy", "reward_format", "reward",
                  "advantage", "media", "query"}
VERDICT_FIELDS = {"rollout_id", "query_id", "iteration", "checks", "clean", "reasons"}
PAIR_FIELDS = {"pair_id", "query_id", "kind", "iteration", "chosen", "rejected", "chosen_ids", "rejected_ids",
               "chosen_rollout", "chosen_sources", "rejected_rollout", "rejected_reasons", "query"}


def assert_rollouts_are_what_was_sampled(rollouts: list[dict], model_dir: Path, group_size: int) -> None:
    """Ids unique within the stage; each group is one sampling of G; the ids decode to the text; a
    rollout ends with EOS exactly when it was not truncated."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    ids = [r["rollout_id"] for r in rollouts]
    assert len(ids) == len(set(ids))
    groups = {}
    for r in rollouts:
        groups.setdefault(r["group_id"], []).append(r)
        assert r["rollout_id"] == f"{r['group_id']}#{r['rollout']}" and r["group_id"] == f"{r['query_id']}@r{r['round']}"
        assert r["num_tokens"] == len(r["completion_ids"]) > 0
        assert (r["completion_ids"][-1] in eos) != r["truncated"]
        assert tok.decode(r["completion_ids"], skip_special_tokens=True) == r["completion"]
    assert {len(g) for g in groups.values()} == {group_size}
    assert all(len({r["query_id"] for r in g}) == 1 for g in groups.values())


def assert_pair_invariants(pairs: list[dict], rollouts: list[dict], verdicts: list[dict], model_dir: Path,
                           cue: str) -> None:
    """What makes a pair right, checked on every pair against the rollouts and verdicts it came from."""
    from transformers import AutoTokenizer

    from veripo.rewards import is_well_formed

    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    rows = {r["rollout_id"]: r for r in rollouts}
    ver = {v["rollout_id"]: v for v in verdicts}
    assert len(ver) == len(verdicts) == len(rows)
    for p in pairs:
        assert p["chosen_ids"] != p["rejected_ids"], p["pair_id"]
        rej, rv = rows[p["rejected_rollout"]], ver[p["rejected_rollout"]]
        ch, cv = rows[p["chosen_rollout"]], ver[p["chosen_rollout"]]
        assert p["rejected"] == rej["completion"] and p["rejected_ids"] == rej["completion_ids"]
        assert p["rejected_reasons"] == rv["reasons"] and rv["reasons"]
        assert ch["query_id"] == rej["query_id"] == p["query_id"] and ch["rollout_id"] != rej["rollout_id"]
        # the chosen rollout: right, consistent, clean, well formed, complete
        assert cv["clean"] and cv["checks"]["accuracy"]["label"] == "right", p["pair_id"]
        assert cv["checks"]["consistency"]["verdict"] == "CONSISTENT" and ch["reward_accuracy"] >= 0.9
        assert is_well_formed(ch["completion"]) and not ch["truncated"]
        if p["kind"] == "reflection":
            answer = ch["completion"].split("<answer>")[1].split("</answer>")[0]
            assert p["chosen"].endswith(f"<answer>{answer}</answer>") and f" {cue} " in p["chosen"]
            assert p["chosen_sources"] == [rej["rollout_id"], ch["rollout_id"]]
            assert rv["clean"] and rv["checks"]["accuracy"]["label"] == "wrong"
            assert p["chosen_ids"] == tok(p["chosen"], add_special_tokens=False)["input_ids"] + [eos]
        else:
            assert p["chosen"] == ch["completion"] and p["chosen_ids"] == ch["completion_ids"]
            assert p["chosen_sources"] == [ch["rollout_id"]]
            if p["kind"] == "penalty":
                assert not rv["clean"]
            else:
                assert rv["clean"] and (rv["checks"]["accuracy"]["label"] == "wrong"
                                        or rv["checks"]["consistency"]["verdict"] == "INCONSISTENT")


def assert_checkpoint(path: Path):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    AutoProcessor.from_pretrained(path)


@pytest.mark.slow
def test_default_chain_runs_and_every_artifact_has_its_schema(tmp_path, finished_run, default_config):
    cfg = small_config(default_config, iterations=2)
    w = finished_run
    base = json.loads((w / "base/model.json").read_text())
    assert base["kind"] == "tiny" and base["params"] > 100_000
    for ckpt in ["base/model", "iter0/grpo/model", "iter1/grpo/model", "iter1/dpo/model", "iter2/dpo/model"]:
        assert_checkpoint(w / ckpt)
    act = jsonl(w / "iter0/grpo/rollouts.jsonl")
    assert len(act) == 4 * cfg["grpo"]["rollouts_per_query"] and {r["stage"] for r in act} == {"activation"}
    assert cfg["grpo"]["per_iteration"][0]["epochs"] > 1  # ids must stay unique across epochs
    G = cfg["grpo"]["rollouts_per_query"]
    for k in (1, 2):
        rollouts = jsonl(w / f"iter{k}/grpo/rollouts.jsonl")
        assert rollouts and all(ROLLOUT_FIELDS <= set(r) for r in rollouts)
        assert {r["epoch"] for r in rollouts} == set(range(cfg["grpo"]["per_iteration"][k - 1]["epochs"]))
        assert_rollouts_are_what_was_sampled(rollouts, w / f"iter{k}/grpo/model", G)
        assert all(0 <= r["reward_accuracy"] <= 1 and r["reward_format"] in (0, 0.5) for r in rollouts)
        assert all(r["query"].get("video") for r in rollouts)
        verdicts = jsonl(w / f"iter{k}/verifier/verdicts.jsonl")
        assert len(verdicts) == len(rollouts) and all(VERDICT_FIELDS <= set(v) for v in verdicts)
        assert {"length", "format", "repetition", "accuracy", "consistency"} == set(verdicts[0]["checks"])
        stats = json.loads((w / f"iter{k}/verifier/stats.json").read_text())
        assert stats["rollouts"] == len(rollouts)
        pairs = jsonl(w / f"iter{k}/dpo/pairs.jsonl")
        assert pairs and all(PAIR_FIELDS <= set(p) for p in pairs)
        assert_pair_invariants(pairs, rollouts, verdicts, w / f"iter{k}/grpo/model", cfg["pairs"]["reflection_cue"])
        pair_stats = json.loads((w / f"iter{k}/dpo/pair_stats.json").read_text())
        assert pair_stats["pairs"] == len(pairs) and set(pair_stats["dropped"]) >= {"same_tokens"}
        heldout = json.loads((w / f"iter{k}/dpo/heldout.json").read_text())
        assert 0 < heldout["pairs"] < len(pairs) and heldout["before"]["margin"] == 0.0
        dpo_metrics = jsonl(w / f"iter{k}/dpo/metrics.jsonl")
        assert dpo_metrics and all("positive_margin_share" in m and "reward_accuracy" not in m for m in dpo_metrics)
        assert sum(m["pairs"] for m in dpo_metrics) == (len(pairs) - heldout["pairs"]) * cfg["dpo"]["epochs"]
        assert all(p["kind"] in cfg["pairs"]["kinds"] for p in pairs)
        per_query = {}
        for p in pairs:
            per_query[p["query_id"]] = per_query.get(p["query_id"], 0) + 1
        assert all(n <= cfg["pairs"]["max_per_query"] for n in per_query.values())
        for m in jsonl(w / f"iter{k}/grpo/metrics.jsonl"):
            assert {"loss", "kl", "reward/accuracy", "reward/format", "response_length"} <= set(m)
    kept = jsonl(w / "iter1/data/train_video.jsonl")
    assert 0 < len(kept) <= cfg["data"]["synthetic"]["n_train_video"]
    preds = jsonl(w / "iter2/eval/vsi_bench.predictions.jsonl")
    assert len(preds) == cfg["data"]["synthetic"]["n_benchmark"]
    assert len({p["key"] for p in preds}) == len(preds)
    score = json.loads((w / "iter2/eval/vsi_bench.json").read_text())
    assert score["benchmark"] == "vsi_bench" and score["n"] == len(preds)
    assert 0 <= score["overall"] <= 100 and "official_overall" in score and score["categories"]
    assert score["inconsistency"]["judge"] == "rule" and 0 <= score["inconsistency"]["rate"] <= 100
    assert score["provenance"]["checkpoint"] == "iter2/dpo/model"
    assert len(score["provenance"]["checkpoint_sha256"]) == 64
    for rule in ("grpo_train", "dpo_train", "verifier_judge", "eval_generate"):
        assert list((w / "logs/benchmarks" / rule).glob("*.tsv")), rule
        assert list((w / "logs" / rule).glob("*.log")), rule
    assert not list(w.glob("checkpoints/*/*/step-*"))  # step checkpoints are cleared once a job is done
    # What a person reads: one summary line per job in Snakemake's own output, named by the job's
    # artifact and quoting the artifact's numbers, and a finished progress bar in each long job's log.
    shown = (w / "snakemake.out").read_text().splitlines()

    def summary(artifact: str) -> str:
        lines = [line for line in shown if line.startswith(f"{artifact}: ")]
        assert len(lines) == 1, (artifact, lines)
        return lines[0]

    grpo1 = jsonl(w / "iter1/grpo/metrics.jsonl")
    acc = [m["reward/accuracy"] for m in grpo1]
    assert f"reward/accuracy {acc[0]:.3f} -> {acc[-1]:.3f} (mean {sum(acc) / len(acc):.3f})" in summary("iter1/grpo/model")
    assert f"{len(grpo1)} steps" in summary("iter1/grpo/model")
    dpo1 = jsonl(w / "iter1/dpo/metrics.jsonl")
    assert f"loss {dpo1[0]['loss']:.3f} -> {dpo1[-1]['loss']:.3f}" in summary("iter1/dpo/model")
    stats1 = json.loads((w / "iter1/dpo/pair_stats.json").read_text())
    assert summary("iter1/dpo/pairs.jsonl").startswith(f"iter1/dpo/pairs.jsonl: {stats1['pairs']} pairs")
    assert f"vsi_bench overall {score['overall']:.2f}" in summary("iter2/eval/vsi_bench.json")
    assert "inconsistency rate" in summary("iter2/verifier/verdicts.jsonl")
    assert "warm-up steps" in summary("base/model") and "kept" in summary("iter1/data/train_video.jsonl")
    # at its end the run prints the scores it was asked for, with their numbers, and how to make the report
    assert any(line.startswith(f"    iter2/eval/vsi_bench.json: vsi_bench overall {score['overall']:.2f} (95% CI ")
               for line in shown), shown[-10:]
    assert f"  figures: {w.resolve() / 'figures'}" in shown  # report_figures was a target
    assert any(line.startswith("  report:  snakemake --report report.html") for line in shown)
    for log, bar in [("base_warmup/base_warmup.log", "warmup"), ("grpo_train/iter1.log", "grpo video"),
                     ("grpo_train/iter0.log", "grpo activation"), ("dpo_train/iter1.log", "dpo"),
                     ("verifier_judge/iter1.log", "verify"), ("eval_generate/iter2_eval_vsi_bench.log", "eval")]:
        text = (w / "logs" / log).read_text()
        assert any(line.lstrip("\r").startswith(f"{bar}: 100%") for line in text.replace("\r", "\n").splitlines()), log
    # nothing left to do on a rerun
    again = snakemake(w, cfg, "-n", "iter2/eval/vsi_bench.json")
    assert "Nothing to be done" in again.stdout + again.stderr

    # The shared run stays as it is: the fresh pass below rewrites iteration 1's pairs in a copy.
    w = tmp_path / "run"
    shutil.copytree(finished_run, w, symlinks=True)

    # The verifier's fresh sampling pass (verifier.rollouts.source: fresh) on iteration 1's GRPO model:
    # only the verifier's rules run, on G new rollouts per query, and the pairs keep every invariant.
    fresh = copy.deepcopy(cfg)
    fresh["verifier"]["rollouts"].update(source="fresh", rollouts_per_query=6, seed=1)
    out = snakemake(w, fresh, "iter1/dpo/pairs.jsonl", "--rerun-triggers", "mtime", "input")
    assert out.returncode == 0, out.stderr[-3000:]
    ran = job_counts(out.stdout + out.stderr)
    assert ran == {"verifier_sample": 1, "verifier_judge": 1, "dpo_build_pairs": 1, "total": 3}, ran
    rows = jsonl(w / "iter1/verifier/rollouts.jsonl")
    assert len(rows) == cfg["data"]["synthetic"]["n_train_video"] * 6 and {r["stage"] for r in rows} == {"fresh"}
    assert_rollouts_are_what_was_sampled(rows, w / "iter1/grpo/model", 6)
    pairs = jsonl(w / "iter1/dpo/pairs.jsonl")
    assert pairs and {p["chosen_rollout"] for p in pairs} <= {r["rollout_id"] for r in rows}
    assert_pair_invariants(pairs, rows, jsonl(w / "iter1/verifier/verdicts.jsonl"), w / "iter1/grpo/model",
                           cfg["pairs"]["reflection_cue"])


def test_fresh_sampling_pass_is_in_the_dag_when_asked(tmp_path, default_config):
    cfg = copy.deepcopy(default_config)
    cfg["verifier"]["rollouts"]["source"] = "fresh"
    out = snakemake(tmp_path, cfg, "-n", "iter3/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout + out.stderr)
    assert counts["verifier_sample"] == 3 and counts["verifier_judge"] == 3
