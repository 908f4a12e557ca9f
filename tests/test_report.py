"""The run's report: the collectors read the artifacts into the right numbers and stop with one line
naming a missing or corrupt file; the plan names what the rules write; on a finished run, rule
report_figures and `snakemake --report` give every figure with its caption."""
import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, snakemake
from veripo.config import ConfigError, validate_config
from veripo.errors import InputError
from veripo.report import collect, plan

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def grpo_row(rnd, acc, length, loss, kl=0.0):
    return {"stage": "video", "iteration": 1, "round": rnd, "step_in_round": 0, "loss": loss, "kl": kl,
            "clip_frac": 0.0, "grad_norm": 1.0, "reward/accuracy": acc, "reward/format": 0.5,
            "response_length": length}


def verifier_stats(n, wrong, inconsistent, clean):
    return {"rollouts": n, "queries": 4, "clean": clean, "inconsistency_rate": round(inconsistent / n, 4),
            "checks": {"length": {"ok": n - 1, "fail": 1}, "format": {"ok": n, "fail": 0},
                       "repetition": {"ok": n - 2, "fail": 2},
                       "accuracy": {"right": n - wrong - 3, "partial": 3, "wrong": wrong},
                       "consistency": {"CONSISTENT": n - inconsistent, "INCONSISTENT": inconsistent,
                                       "UNKNOWN": 0, "UNPARSABLE": 0}}}


def score(overall, inconsistent, unknown=0, official=None, categories=None, n=6):
    """A score file as eval_score writes it: the rate is the INCONSISTENT share of all n, in %."""
    counts = {"CONSISTENT": n - inconsistent - unknown, "INCONSISTENT": inconsistent, "UNKNOWN": unknown,
              "UNPARSABLE": 0}
    out = {"benchmark": "vsi_bench", "n": n, "overall": overall, "categories": categories or {"a": overall},
           "inconsistency": {"judge": "rule", "rate": 100.0 * inconsistent / n, "counts": counts}}
    if official is not None:
        out["official_overall"] = official
    return out


# --- collectors -------------------------------------------------------------------------------------

def grpo_settings(path, format_weight=0.5):
    """The part of a GRPO job's settings.json the report reads: the stage's grpo section."""
    path.write_text(json.dumps({"stage": "video", "config": {"grpo": {"format_weight": format_weight}}}))
    return path


def test_grpo_curves_are_the_logged_steps_in_order(tmp_path):
    rows = [grpo_row(0, 0.25, 20.0, 0.1), grpo_row(0, 0.25, 20.0, -0.1), grpo_row(1, 0.75, 24.5, 0.05, kl=0.01)]
    curves = collect.grpo_curves(write_jsonl(tmp_path / "metrics.jsonl", rows), grpo_settings(tmp_path / "s.json"))
    assert curves["step"] == [0, 1, 2] and curves["rounds"] == 2 and curves["stage"] == "video"
    assert curves["reward/accuracy"] == [0.25, 0.25, 0.75]
    assert curves["response_length"] == [20.0, 20.0, 24.5] and curves["kl"] == [0.0, 0.0, 0.01]
    assert sum(curves["loss"]) == pytest.approx(0.05)


def test_grpo_curves_name_the_line_and_field_that_is_missing_or_not_a_number(tmp_path):
    rows = [grpo_row(0, 0.5, 20.0, 0.1), grpo_row(1, 0.5, 20.0, 0.1)]
    del rows[1]["response_length"]
    path = write_jsonl(tmp_path / "metrics.jsonl", rows)
    settings = grpo_settings(tmp_path / "settings.json")
    with pytest.raises(InputError, match=r"metrics\.jsonl, line 2, field 'response_length': missing"):
        collect.grpo_curves(path, settings)
    rows[1]["response_length"] = "long"
    write_jsonl(path, rows)
    with pytest.raises(InputError, match=r"line 2, field 'response_length': expected a finite number"):
        collect.grpo_curves(path, settings)
    path.write_text("")
    with pytest.raises(InputError, match="no steps logged"):
        collect.grpo_curves(path, settings)


def test_grpo_curves_carry_the_vllm_logprob_gap_only_when_logged(tmp_path):
    gap = {"vllm/logprob_gap_mean": 2e-6, "vllm/logprob_gap_max": 3e-5}
    rows = [grpo_row(0, 0.25, 20.0, 0.1) | gap, grpo_row(1, 0.5, 20.0, 0.1) | gap]
    path = write_jsonl(tmp_path / "metrics.jsonl", rows)
    settings = grpo_settings(tmp_path / "settings.json")
    curves = collect.grpo_curves(path, settings)
    assert curves["vllm/logprob_gap_mean"] == [2e-6, 2e-6] and curves["vllm/logprob_gap_max"] == [3e-5, 3e-5]
    assert "vllm/logprob_gap_max" not in collect.grpo_curves(write_jsonl(path, [grpo_row(0, 0.25, 20.0, 0.1)]),
                                                             settings)
    del rows[1]["vllm/logprob_gap_max"]  # a stage logs it on every step or on none
    write_jsonl(path, rows)
    with pytest.raises(InputError, match=r"line 2, field 'vllm/logprob_gap_max': missing"):
        collect.grpo_curves(path, settings)


def test_grpo_curves_carry_the_format_rewards_maximum_from_the_stage_settings(tmp_path):
    """The format reward tops out at grpo.format_weight (0.5 by default), accuracy at 1: the figure gives
    format its own axis up to that maximum, read from the settings the stage ran with."""
    path = write_jsonl(tmp_path / "metrics.jsonl", [grpo_row(0, 0.25, 20.0, 0.1)])
    assert collect.grpo_curves(path, grpo_settings(tmp_path / "s.json", 0.25))["format_weight"] == 0.25
    (tmp_path / "s.json").write_text(json.dumps({"config": {"grpo": {}}}))
    with pytest.raises(InputError, match=r"s\.json, field 'config\.grpo\.format_weight': missing"):
        collect.grpo_curves(path, tmp_path / "s.json")


def test_dpo_curves_and_heldout(tmp_path):
    rows = [{"step": 0, "loss": 0.6931, "margin": 0.0, "positive_margin_share": 0.0, "pairs": 8},
            {"step": 1, "loss": 0.61, "margin": 1.5, "positive_margin_share": 0.75, "pairs": 8}]
    heldout = {"pairs": 4, "queries": 2,
               "before": {"logp_gap": -8.0, "logp_gap_per_token": -0.5, "chosen_preferred": 0.25, "margin": 0.0},
               "after": {"logp_gap": -6.0, "logp_gap_per_token": -0.4, "chosen_preferred": 0.5, "margin": 2.0,
                         "positive_margin_share": 0.75}}
    (tmp_path / "heldout.json").write_text(json.dumps(heldout))
    curves = collect.dpo_curves(write_jsonl(tmp_path / "metrics.jsonl", rows), tmp_path / "heldout.json")
    assert curves["step"] == [0, 1] and curves["margin"] == [0.0, 1.5]
    # the same quantities before and after, side by side; DPO's margin (a change) apart from them
    assert curves["heldout"]["before"] == {"chosen_preferred": 0.25, "logp_gap": -8.0, "logp_gap_per_token": -0.5}
    assert curves["heldout"]["after"] == {"chosen_preferred": 0.5, "logp_gap": -6.0, "logp_gap_per_token": -0.4}
    assert curves["heldout"]["change"] == {"margin": 2.0, "positive_margin_share": 0.75}


def test_a_skipped_dpo_stage_has_no_steps(tmp_path):
    """dpo.on_too_few_pairs: skip writes empty metrics and a held-out report of 0 pairs."""
    (tmp_path / "metrics.jsonl").write_text("")
    empty = {"pairs": 0, "queries": 0, "before": {"logp_gap": None, "logp_gap_per_token": None,
                                                  "chosen_preferred": None, "margin": None},
             "after": {"logp_gap": None, "logp_gap_per_token": None, "chosen_preferred": None, "margin": None,
                       "positive_margin_share": None}}
    (tmp_path / "heldout.json").write_text(json.dumps(empty))
    curves = collect.dpo_curves(tmp_path / "metrics.jsonl", tmp_path / "heldout.json")
    assert curves["step"] == [] and curves["heldout"] == {"pairs": 0}


def test_verifier_table_is_in_percent_of_the_rollouts(tmp_path):
    (tmp_path / "s1.json").write_text(json.dumps(verifier_stats(200, wrong=50, inconsistent=30, clean=180)))
    (tmp_path / "s2.json").write_text(json.dumps(verifier_stats(80, wrong=8, inconsistent=4, clean=80)))
    table = collect.verifier_table({"2": str(tmp_path / "s2.json"), "1": str(tmp_path / "s1.json")})
    assert list(table) == [1, 2]
    assert table[1]["rollouts"] == 200 and table[1]["reasons"]["wrong answer"] == 25.0
    assert table[1]["reasons"]["inconsistent"] == 15.0 and table[1]["inconsistency"] == pytest.approx(15.0)
    assert table[1]["reasons"]["repetitive"] == 1.0 and table[1]["clean"] == 90.0
    assert table[2]["reasons"]["wrong answer"] == 10.0 and table[2]["clean"] == 100.0


def test_verifier_table_holds_every_verdict_unknown_included(tmp_path):
    stats = verifier_stats(200, wrong=50, inconsistent=30, clean=180)
    stats["checks"]["consistency"].update(CONSISTENT=150, UNKNOWN=16, UNPARSABLE=4)
    (tmp_path / "s.json").write_text(json.dumps(stats))
    row = collect.verifier_table({"1": str(tmp_path / "s.json")})[1]
    assert row["verdicts"] == {"CONSISTENT": 75.0, "INCONSISTENT": 15.0, "UNKNOWN": 8.0, "UNPARSABLE": 2.0}
    assert row["judges"] == []  # the hand-written stats name none; a run's name the rule judge (below)
    stats["checks"]["consistency"]["UNKNOWN"] = 10  # the verdicts no longer add up to the rollouts
    (tmp_path / "s.json").write_text(json.dumps(stats))
    with pytest.raises(InputError, match=r"field 'checks\.consistency': the verdicts sum to 194, not to the 200"):
        collect.verifier_table({"1": str(tmp_path / "s.json")})


def test_verifier_table_names_a_missing_check(tmp_path):
    stats = verifier_stats(10, 1, 1, 10)
    del stats["checks"]["repetition"]
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(InputError, match=r"stats\.json, field 'checks\.repetition\.fail': missing"):
        collect.verifier_table({"1": str(tmp_path / "stats.json")})


def test_pair_table_counts_and_checks_the_kinds_add_up(tmp_path):
    stats = {"pairs": 7, "queries": 8, "queries_with_pairs": 5, "queries_with_chosen": 6,
             "by_kind": {"consistency": 3, "penalty": 1, "reflection": 3}}
    (tmp_path / "p.json").write_text(json.dumps(stats))
    row = collect.pair_table({"1": str(tmp_path / "p.json")})[1]
    assert row["by_kind"] == {"consistency": 3, "penalty": 1, "reflection": 3} and row["queries_with_chosen"] == 6
    stats["pairs"] = 9
    (tmp_path / "p.json").write_text(json.dumps(stats))
    with pytest.raises(InputError, match="by_kind sums to 7, not to pairs 9"):
        collect.pair_table({"1": str(tmp_path / "p.json")})


def test_score_table_follows_the_chain_and_names_a_corrupt_file(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps(score(20.0, 1, n=10, official=18.0)))
    (tmp_path / "it1.json").write_text(json.dumps(score(35.5, 1, n=40)))
    rows = [{"label": "base", "kind": "base", "path": str(tmp_path / "base.json")},
            {"label": "iter1", "kind": "dpo", "path": str(tmp_path / "it1.json")}]
    table = collect.score_table(rows)
    assert [r["overall"] for r in table] == [20.0, 35.5] and [r["inconsistency"] for r in table] == [10.0, 2.5]
    assert table[0]["official_overall"] == 18.0 and table[1]["official_overall"] is None
    (tmp_path / "it1.json").write_text('{"benchmark": "vsi_bench",\n "n": 6,\n "overall": }')
    with pytest.raises(InputError, match=r"it1\.json, line 3: malformed JSON"):
        collect.score_table(rows)
    (tmp_path / "it1.json").unlink()
    with pytest.raises(InputError, match=r"it1\.json: file does not exist"):
        collect.score_table(rows)


def test_score_table_shows_the_answers_without_a_verdict(tmp_path):
    """A 0.0% rate where 5 of 24 answers have no verdict (UNKNOWN) and the rest are consistent: the table
    the figure draws holds all three shares, and counts that disagree with n or the rate stop it."""
    (tmp_path / "s.json").write_text(json.dumps(score(40.0, 0, unknown=5, n=24)))
    rows = [{"label": "base", "kind": "base", "path": str(tmp_path / "s.json")}]
    row = collect.score_table(rows)[0]
    assert row["inconsistency"] == 0.0 and row["judge"] == "rule"
    assert row["verdicts"] == pytest.approx({"CONSISTENT": 100 * 19 / 24, "INCONSISTENT": 0.0,
                                             "UNKNOWN": 100 * 5 / 24, "UNPARSABLE": 0.0})
    bad = score(40.0, 0, unknown=5, n=24)
    del bad["inconsistency"]["counts"]["UNKNOWN"]
    (tmp_path / "s.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"field 'inconsistency\.counts\.UNKNOWN': missing"):
        collect.score_table(rows)
    bad = score(40.0, 3, n=24)
    bad["inconsistency"]["rate"] = 0.0
    (tmp_path / "s.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"inconsistency rate 0% is not INCONSISTENT's share 12\.5%"):
        collect.score_table(rows)


def test_wall_times_take_the_mean_of_column_s(tmp_path):
    header = "s\th:m:s\tmax_rss\n"
    (tmp_path / "grpo_train").mkdir()
    (tmp_path / "grpo_train" / "iter0.tsv").write_text(header + "10.0\t0:00:10\t1\n30.0\t0:00:30\t1\n")
    (tmp_path / "grpo_train" / "iter1.tsv").write_text(header + "5.5\t0:00:05\t1\n")
    (tmp_path / "eval_score").mkdir()
    (tmp_path / "eval_score" / "base_eval_vsi_bench.tsv").write_text(header + "1.25\t0:00:01\t1\n")
    times = collect.wall_times(tmp_path)
    assert times == {"grpo_train": {"iter0": 20.0, "iter1": 5.5}, "eval_score": {"base_eval_vsi_bench": 1.25}}
    (tmp_path / "eval_score" / "base_eval_vsi_bench.tsv").write_text(header + "NA\t-\t1\n")
    with pytest.raises(InputError, match=r"base_eval_vsi_bench\.tsv, line 2, field 's': expected a number"):
        collect.wall_times(tmp_path)
    (tmp_path / "eval_score" / "base_eval_vsi_bench.tsv").write_text("h:m:s\n0:00:01\n")
    with pytest.raises(InputError, match=r"field 's': missing required column"):
        collect.wall_times(tmp_path)


# --- plan and config --------------------------------------------------------------------------------

def test_the_plan_reads_each_stage_once_and_every_caption_exists():
    m = plan.manifest(3, ["vsi_bench", "mmvu"], eval_grpo=True)
    paths = list(plan.manifest_paths(m).values())
    assert len(paths) == len(set(paths))
    assert sorted(m["grpo"]) == ["0", "1", "2", "3"] and sorted(m["dpo"]) == sorted(m["verifier"]) == ["1", "2", "3"]
    chain = [r["path"] for r in m["scores"]["mmvu"]]
    assert chain == ["base/eval/mmvu.json", "iter0/eval/mmvu.json", "iter1/eval_grpo/mmvu.json",
                     "iter1/eval/mmvu.json", "iter2/eval_grpo/mmvu.json", "iter2/eval/mmvu.json",
                     "iter3/eval_grpo/mmvu.json", "iter3/eval/mmvu.json"]
    without = plan.manifest(3, ["vsi_bench"], eval_grpo=False)
    assert not any("eval_grpo" in p for p in plan.manifest_paths(without).values())
    figures = plan.figures(3, ["vsi_bench", "mmvu"])
    names = [f.name for f in figures]
    assert len(names) == len(set(names)) == 4 + 1 + 3 + 3 + 2 + 1
    for f in figures:
        assert (ROOT / "report" / f"{f.caption}.rst").read_text().strip(), f.caption
    assert (ROOT / "report" / "workflow.rst").exists()


def test_report_benchmarks_must_be_evaluated(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["report"]["benchmarks"] = ["vsi_bench", "nope_bench"]
    with pytest.raises(ConfigError, match=r"report\.benchmarks\[1\]"):
        validate_config(cfg)
    del cfg["eval"]["benchmarks"]["mmvu"]
    cfg["report"]["benchmarks"] = ["mmvu"]
    with pytest.raises(ConfigError, match=r"report\.benchmarks\[0\]': 'mmvu' is not one of eval\.benchmarks"):
        validate_config(cfg)
    cfg["report"]["eval_grpo"] = "yes"
    with pytest.raises(ConfigError, match=r"report\.eval_grpo"):
        validate_config(cfg)


# --- the figure job ---------------------------------------------------------------------------------

CONSISTENT_ROLLOUT = "<think>The ball is red. So the answer is A.</think><answer>A</answer>"
INCONSISTENT_ROLLOUT = "<think>The ball is blue. So the answer is B.</think><answer>C</answer>"


def grpo_rollouts(root, k, rounds):
    """Iteration k's GRPO rollouts, two per round: a consistent one, and in odd rounds an inconsistent
    one (rule judge: the think concludes B, the answer says C); and the stage checkpoint's tokenizer
    (words and punctuation, one token each), which counts their think tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    query = {"id": "q", "question": "Which colour?\nA. red\nB. blue\nC. green", "answer": "A",
             "answer_type": "multiple_choice"}
    write_jsonl(root / f"iter{k}/grpo/rollouts.jsonl",
                [{"rollout_id": f"q@r{r}#{i}", "query_id": "q", "iteration": k, "round": r, "completion": text,
                  "num_tokens": 20, "reward_accuracy": float(text.endswith("<answer>A</answer>")), "query": query}
                 for r in range(rounds) for i, text in
                 enumerate([CONSISTENT_ROLLOUT, INCONSISTENT_ROLLOUT if r % 2 else CONSISTENT_ROLLOUT])])
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (root / f"iter{k}/grpo/model").mkdir()
    tok.save(str(root / f"iter{k}/grpo/model/tokenizer.json"))


def small_run(root):
    """The artifacts of a 1-iteration run, as the rules lay them out (a tiny one, hand-written)."""
    for k in (0, 1):
        (root / f"iter{k}/grpo").mkdir(parents=True)
        # iteration 1's rollouts came from vLLM: its rows carry the log-prob gap
        gap = {"vllm/logprob_gap_mean": 1e-6, "vllm/logprob_gap_max": 2e-5} if k else {}
        write_jsonl(root / f"iter{k}/grpo/metrics.jsonl",
                    [grpo_row(r // 2, 0.25 + 0.05 * r, 20.0 + r, 0.1 - 0.02 * r) | gap for r in range(12)])
        grpo_settings(root / f"iter{k}/grpo/settings.json")
        grpo_rollouts(root, k, rounds=6)
    (root / "iter1/dpo").mkdir()
    write_jsonl(root / "iter1/dpo/metrics.jsonl",
                [{"step": s, "loss": 0.69 - 0.05 * s, "margin": 0.4 * s, "positive_margin_share": 0.1 * s}
                 for s in range(5)])
    (root / "iter1/dpo/heldout.json").write_text(json.dumps({"pairs": 0}))
    (root / "iter1/dpo/pair_stats.json").write_text(json.dumps(
        {"pairs": 5, "queries": 8, "queries_with_pairs": 3, "queries_with_chosen": 4,
         "by_kind": {"consistency": 2, "penalty": 1, "reflection": 2}}))
    (root / "iter1/verifier").mkdir()
    (root / "iter1/verifier/stats.json").write_text(json.dumps(verifier_stats(64, 20, 10, 60)))
    for evaldir, value, inconsistent in (("base/eval", 20.0, 3), ("iter0/eval", 25.0, 2),
                                         ("iter1/eval_grpo", 30.0, 2), ("iter1/eval", 32.0, 1)):
        (root / evaldir).mkdir(parents=True)
        (root / evaldir / "vsi_bench.json").write_text(json.dumps(score(value, inconsistent, unknown=1,
                                                                        official=value)))
    (root / "logs/benchmarks/grpo_train").mkdir(parents=True)
    (root / "logs/benchmarks/grpo_train/iter0.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")


def default_verifier():
    return yaml.safe_load((ROOT / "config.yaml").read_text())["verifier"]


def run_figures(root, names):
    m = plan.manifest(1, ["vsi_bench"], eval_grpo=True)
    return subprocess.run([sys.executable, str(ROOT / "scripts/report_figures.py"), "--manifest", json.dumps(m),
                           "--verifier", json.dumps(default_verifier()), "--benchmarks-dir", "logs/benchmarks",
                           *[f"figures/{n}.png" for n in names]],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_grpo_rounds_of_both_stages_lie_end_to_end(tmp_path, monkeypatch):
    """Iteration 1's rounds continue the axis where iteration 0's end; each round's rewards and length
    are its steps' (two per round) in its own metrics file, its inconsistency the share of its rollouts
    the rule judge finds inconsistent, and its think length their think tokens."""
    small_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    along = collect.grpo_along_iterations(plan.manifest(1, ["vsi_bench"], eval_grpo=True)["grpo"],
                                          default_verifier())
    assert [it["iteration"] for it in along] == [0, 1]
    assert along[0]["rounds"] == along[1]["rounds"] == list(range(6))
    assert along[0]["x"] == list(range(6)) and along[1]["x"] == list(range(6, 12))
    for it in along:  # small_run's step s (round s // 2) logs accuracy 0.25 + 0.05 s and length 20 + s
        assert it["reward/accuracy"] == pytest.approx([0.25 + 0.05 * (2 * r + 0.5) for r in range(6)])
        assert it["response_length"] == pytest.approx([20.0 + 2 * r + 0.5 for r in range(6)])
        assert it["reward/format"] == [0.5] * 6 and it["format_weight"] == 0.5
        assert it["inconsistency"] == [0.0, 50.0, 0.0, 50.0, 0.0, 50.0]
        # "The ball is red. So the answer is A." and its blue twin: 9 words and 2 full stops each
        assert it["think_tokens"] == [11.0] * 6
    rows = [json.loads(line) for line in (tmp_path / "iter1/grpo/rollouts.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "iter1/grpo/rollouts.jsonl", [r for r in rows if r["round"] != 5])
    with pytest.raises(InputError, match=r"iter1/grpo/rollouts\.jsonl: rollouts of rounds \[0, 1, 2, 3, 4\], "
                                         r"but iter1/grpo/metrics\.jsonl logs rounds \[0, 1, 2, 3, 4, 5\]"):
        collect.grpo_along_iterations(plan.manifest(1, ["vsi_bench"], eval_grpo=True)["grpo"], default_verifier())


def test_the_figure_job_draws_every_planned_figure(tmp_path):
    small_run(tmp_path)
    names = [f.name for f in plan.figures(1, ["vsi_bench"])]
    out = run_figures(tmp_path, names)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in names:
        data = (tmp_path / "figures" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    assert not list((tmp_path / "figures").glob(".*")), "a temporary file was left behind"


def test_the_figure_job_stops_with_one_line_naming_a_missing_file(tmp_path):
    small_run(tmp_path)
    (tmp_path / "iter1/verifier/stats.json").unlink()
    out = run_figures(tmp_path, ["verifier"])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "error: iter1/verifier/stats.json: file does not exist"
    assert not (tmp_path / "figures" / "verifier.png").exists()


# --- on a finished run ------------------------------------------------------------------------------

def caption_phrase(name: str) -> str:
    """The caption's first words: plain text that the HTML report must carry."""
    return " ".join((ROOT / "report" / f"{name}.rst").read_text().split()[:5])


@pytest.mark.slow
def test_figures_and_the_html_report_of_a_finished_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    cfg = yaml.safe_load((run / "test_config.yaml").read_text())
    out = snakemake(run, cfg, "report_figures")
    assert out.returncode == 0, out.stderr[-5000:]
    figures = plan.figures(cfg["iterations"], cfg["report"]["benchmarks"])
    for f in figures:
        data = (run / "figures" / f"{f.name}.png").read_bytes()
        # a drawn figure of ~1000x500 pixels with text and curves, not a blank canvas
        assert data.startswith(PNG_MAGIC) and 20_000 < len(data) < 2_000_000, f.name
    assert list((run / "logs/benchmarks/report_figures").glob("*.tsv"))
    # the figures' job as the target: the report then holds them whether or not `rule all` does
    out = snakemake(run, cfg, "--report", "report.html", "report_figures")
    assert out.returncode == 0, out.stderr[-5000:]
    html = (run / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and html.rstrip().endswith("</html>")
    for caption in {f.caption for f in figures} | {"workflow"}:
        assert caption_phrase(caption) in html, caption
    for f in figures:
        assert f"{f.name}.png" in html, f.name


@pytest.mark.slow
def test_the_finished_runs_figures_draw_every_verdict_and_put_each_quantity_on_its_own_scale(finished_run,
                                                                                           monkeypatch):
    """On the chain's own artifacts: the inconsistency panel's bars are the score files' verdict counts,
    UNKNOWN included, and sum to 100%; the format reward is drawn on an axis up to the stage's
    grpo.format_weight, not on accuracy's 0-1; each held-out panel sets a quantity before DPO beside the
    same quantity after, and DPO's margin (a change) is no bar of its own."""
    from veripo.report import figures
    from veripo.report.collect import collect as collect_all

    cfg = yaml.safe_load((finished_run / "test_config.yaml").read_text())
    monkeypatch.chdir(finished_run)
    m = plan.manifest(cfg["iterations"], cfg["report"]["benchmarks"], cfg["report"]["eval_grpo"])
    tables = collect_all(m, "logs/benchmarks", cfg["verifier"])

    rows = tables["scores"]["vsi_bench"]
    for row, entry in zip(rows, m["scores"]["vsi_bench"]):
        counts = json.loads((finished_run / entry["path"]).read_text())["inconsistency"]["counts"]
        assert row["verdicts"] == pytest.approx({v: 100 * c / row["n"] for v, c in counts.items()}), entry["path"]
        assert sum(row["verdicts"].values()) == pytest.approx(100.0) and row["judge"] == "rule"
    fig = figures.inconsistency_figure(tables["verifier"], tables["scores"])
    left, right = fig.axes
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(label.startswith("UNKNOWN") for label in labels) and "inconsistent" in labels
    # every checkpoint's bar segments stack to its verdict shares (4 verdicts x checkpoints)
    heights = [p.get_height() for p in right.patches]
    assert len(heights) == 4 * len(rows)
    assert heights[2 * len(rows):3 * len(rows)] == pytest.approx([0.0] * len(rows))  # UNPARSABLE: rule judge
    assert heights[len(rows):2 * len(rows)] == pytest.approx([r["verdicts"]["UNKNOWN"] for r in rows])
    assert "rule judge" in fig.get_suptitle()

    weight = cfg["grpo"]["format_weight"]
    for k, curves in tables["grpo"].items():
        assert curves["format_weight"] == weight
        reward = figures.grpo_figure(k, curves).axes
        format_axis = next(ax for ax in reward if "format reward" in ax.get_ylabel())
        assert format_axis.get_ylim()[1] == pytest.approx(1.05 * weight)
        assert format_axis.get_ylabel() == f"format reward (max {weight:g})"

    for k, curves in tables["dpo"].items():
        heldout = curves["heldout"]
        if not heldout["pairs"]:
            continue
        assert set(heldout["before"]) == set(heldout["after"]) == set(collect.HELDOUT_BOTH)
        assert set(heldout["change"]) == {"margin", "positive_margin_share"}
        axes = figures.dpo_figure(k, curves).axes
        panels = [ax for ax in axes if ax.get_title().startswith("held-out")]
        assert len(panels) == 3
        for ax, key in zip(panels, ("chosen_preferred", "logp_gap_per_token", "logp_gap")):
            assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["before DPO", "after DPO"]
            assert [p.get_height() for p in ax.patches] == pytest.approx([heldout["before"][key],
                                                                          heldout["after"][key]])


@pytest.mark.slow
def test_the_finished_runs_grpo_rounds_lie_end_to_end_on_one_axis(finished_run, monkeypatch):
    """On the chain's own artifacts, what the along-iterations figure plots: per iteration its rounds'
    positions, which go on where the previous iteration's end; each round's rewards and response length,
    the mean of its steps in the iteration's own metrics file; its think length and rule-judge
    inconsistency, counted directly on the round's rollouts; and the lines and boundaries drawn there."""
    import statistics

    from veripo.answers import extract_think
    from veripo.model.text_tokenizer import load_text_tokenizer
    from veripo.report import figures
    from veripo.verify.judges.rule import rule_judge

    cfg = yaml.safe_load((finished_run / "test_config.yaml").read_text())
    monkeypatch.chdir(finished_run)
    m = plan.manifest(cfg["iterations"], cfg["report"]["benchmarks"], cfg["report"]["eval_grpo"])
    along = collect.grpo_along_iterations(m["grpo"], cfg["verifier"])
    assert [it["iteration"] for it in along] == list(range(cfg["iterations"] + 1))
    following = 0  # where the next iteration's first round goes: right after the last one drawn
    for it in along:
        k = it["iteration"]
        metrics = [json.loads(line) for line in (finished_run / f"iter{k}/grpo/metrics.jsonl").read_text().splitlines()]
        rounds = sorted({r["round"] for r in metrics})
        assert it["rounds"] == rounds and it["x"] == list(range(following, following + len(rounds)))
        following += len(rounds)
        for key in ("reward/accuracy", "reward/format", "response_length"):
            assert it[key] == pytest.approx([statistics.fmean(r[key] for r in metrics if r["round"] == n)
                                             for n in rounds]), (k, key)
        rollouts = [json.loads(line) for line in
                    (finished_run / f"iter{k}/grpo/rollouts.jsonl").read_text().splitlines()]
        tokenizer = load_text_tokenizer(str(finished_run / f"iter{k}/grpo/model"))
        for i, n in enumerate(rounds):
            mine = [r for r in rollouts if r["round"] == n]
            verdicts = [rule_judge(r["completion"], r["query"]["answer_type"])["verdict"] for r in mine]
            assert it["inconsistency"][i] == pytest.approx(100 * verdicts.count("INCONSISTENT") / len(mine))
            thinks = [extract_think(r["completion"]) for r in mine]
            assert it["think_tokens"][i] == pytest.approx(
                statistics.fmean(len(tokenizer.encode(t)) if t else 0 for t in thinks))
            # the metrics' rewards and length are those of the same round's rollouts
            assert it["reward/accuracy"][i] == pytest.approx(statistics.fmean(r["reward_accuracy"] for r in mine))
            assert it["response_length"][i] == pytest.approx(statistics.fmean(r["num_tokens"] for r in mine))

    fig = figures.along_iterations_figure(along)
    reward, _, inconsistent, _ = fig.axes  # the three panels, then the reward panel's right axis
    dashed = [line for line in inconsistent.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [it["x"][0] - 0.5 for it in along[1:]]
    # one curve per iteration (a few rounds each: raw values, no trailing mean), at its own positions
    curves = [line for line in inconsistent.lines if line.get_linestyle() == "-"]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in curves] == \
        [(it["x"], it["inconsistency"]) for it in along]
    assert [t.get_text() for t in reward.texts] == [f"iter{it['iteration']}" for it in along]
