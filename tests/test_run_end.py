"""What the terminal shows when a run ends (veripo/report/run_end.py, the Snakefile's onsuccess and
onerror): the scores of the requested targets with their numbers; the end of each failed job's logs."""
import json

from conftest import fail_once_env, small_config, snakemake
from veripo.report.run_end import failed_job_report, run_summary


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def score(benchmark, overall, **extra):
    return json.dumps({"benchmark": benchmark, "n": 48, "overall": overall, "categories": {},
                       "ci95": [overall - 7.5, overall + 7.25], "inconsistency": {"rate": 2.5}, **extra})


def test_summary_prints_the_scores_of_the_requested_targets_only(tmp_path):
    write(tmp_path / "iter1/eval/vsi_bench.json", score("vsi_bench", 41.6667, official_overall=39.125))
    write(tmp_path / "iter1/eval_grpo/mvbench.json", score("mvbench", 55.0))
    # an earlier run's score that this run was not asked for
    write(tmp_path / "iter3/eval/vsi_bench.json", score("vsi_bench", 12.0))
    (tmp_path / "figures").mkdir()
    targets = {"iter1/eval/vsi_bench.json", "iter1/eval_grpo/mvbench.json", "iter2/eval/vsi_bench.json",
               "iter1/dpo/model"}
    text = run_summary(targets, str(tmp_path))
    lines = text.splitlines()
    assert ("    iter1/eval/vsi_bench.json: vsi_bench overall 41.67 (95% CI 34.17-48.92, n=48), "
            "official_overall 39.12, inconsistency 2.50%") in lines
    assert "    iter1/eval_grpo/mvbench.json: mvbench overall 55.00 (95% CI 47.50-62.25, n=48), " \
           "inconsistency 2.50%" in lines
    assert "iter3" not in text and "iter2" not in text  # not requested / not written
    assert "figures:" not in text  # not requested
    assert "figures:" in run_summary(targets | {"figures/scores_vsi_bench.png"}, str(tmp_path))


def test_summary_names_an_unreadable_score_file(tmp_path):
    write(tmp_path / "base/eval/vsi_bench.json", "{not json")
    text = run_summary(["base/eval/vsi_bench.json"], str(tmp_path))
    assert "base/eval/vsi_bench.json: unreadable score file (JSONDecodeError" in text


SNAKEMAKE_LOG = """\
Error in rule grpo_train:
    message: SLURM-job '1003' failed, SLURM status is: 'FAILED'. Reason: Unknown.
    jobid: 1
    log: logs/grpo_train/iter1.log, {slurm_log} (check log file(s) for error details)
    shell:
        python scripts/launch.py {long_command}
        (command exited with non-zero exit code)
    external_jobid: 1003
Trying to restart job 1.
Error in rule grpo_train:
    jobid: 1
    log: logs/grpo_train/iter1.log, {slurm_log} (check log file(s) for error details)
Error in rule eval_generate:
    jobid: 2
    log: logs/eval_generate/iter0_eval_vsi_bench.log (check log file(s) for error details)
Error in rule dpo_train:
    log: logs/dpo_train/iter1.log (check log file(s) for error details)
Shutting down, this might take some time.
"""


def test_failed_job_report_shows_the_end_of_each_log_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slurm_log = tmp_path / ".snakemake/slurm_logs/rule_grpo_train/1/1003.log"
    write(slurm_log, "srun: error: node2: task 1: Out Of Memory\n")
    progress = "".join(f"round {i}/40 " + "\r" for i in range(40)) + "round 40/40\n"
    write(tmp_path / "logs/grpo_train/iter1.log",
          "".join(f"step {i}\n" for i in range(100)) + progress + "x" * 1000 + "\n"
          + "error: CUDA out of memory in grpo_train\n")
    write(tmp_path / "logs/dpo_train/iter1.log", "")
    log = tmp_path / "snakemake.log"
    log.write_text(SNAKEMAKE_LOG.format(slurm_log=slurm_log, long_command="--config " + "{...}" * 2000))
    text = failed_job_report([str(log)], n=5)
    lines = text.splitlines()
    assert lines[1] == "Why the failed jobs stopped (the end of their logs):"
    assert lines[2] == "--- grpo_train: logs/grpo_train/iter1.log, last 5 lines"
    assert lines[3:8] == ["    step 98", "    step 99", "    round 40/40", "    " + "x" * 400 + " ...",
                          "    error: CUDA out of memory in grpo_train"]
    assert lines[8] == f"--- grpo_train: {slurm_log}, last 1 lines"
    assert lines[9] == "    srun: error: node2: task 1: Out Of Memory"
    assert lines[10:] == ["--- eval_generate: logs/eval_generate/iter0_eval_vsi_bench.log was not written "
                          "(the job stopped before it started)", "--- dpo_train: logs/dpo_train/iter1.log is empty"]
    assert "{...}" not in text  # the command line stays in Snakemake's block above


def test_no_failed_job_no_report(tmp_path):
    log = tmp_path / "snakemake.log"
    log.write_text("Building DAG of jobs...\nMissingInputException in rule x\n")
    assert failed_job_report(str(log)) == ""
    assert failed_job_report(str(tmp_path / "missing.log")) == ""


def test_a_failed_local_job_prints_its_log_tail(tmp_path, default_config):
    cfg = small_config(default_config, iterations=1)
    env = fail_once_env(tmp_path / "hook", "data_synthetic", tmp_path / "failed-once")
    out = snakemake(tmp_path, cfg, "data/train_video.jsonl", env=env, timeout=300)
    assert out.returncode != 0
    report = out.stderr[out.stderr.index("Why the failed jobs stopped"):]
    assert report.splitlines()[1].startswith("--- data_synthetic: logs/data_synthetic")
    assert "    error: failing once on purpose" in report
