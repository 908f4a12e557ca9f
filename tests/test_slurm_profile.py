"""profiles/slurm as shipped, through the real snakemake-executor-plugin-slurm, against a fake SLURM.

`snakemake --profile profiles/slurm` also applies the workflow's own profiles/default (Snakemake does so
for every run, key by key over --profile), so a local setting there would silently win on a cluster:
that is what these tests guard. The fake sbatch on PATH records its argv (and the job script) and
answers with a job id; the fake sacct reports every job FAILED, so the run ends after the profile's
retry without any job running. sinfo, squeue, scontrol, sacctmgr, sshare and scancel answer as a
small cluster would.

Before issue 21 the grpo_train job got --latency-wait 5 and --cores 2 from profiles/default, threads 2
on 64 CPUs, and no constraint, QoS or GPU type could be asked for."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

FAKE_SBATCH = r'''#!{python}
"""Records its argv and the job script, answers with a job id (as --parsable asks) and writes what
slurmstepd writes into the job's output file when the job dies for memory."""
import fcntl, json, os, sys
state = os.environ["FAKE_SLURM_DIR"]
script = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(os.path.join(state, "next_id"), "a+") as ids:  # two runs submit at once
    fcntl.flock(ids, fcntl.LOCK_EX)
    ids.seek(0)
    job_id = int(ids.read() or 1001)
    ids.seek(0)
    ids.truncate()
    ids.write(str(job_id + 1))
    with open(os.path.join(state, "sbatch.jsonl"), "a") as fh:
        fh.write(json.dumps({{"id": job_id, "argv": sys.argv[1:], "script": script}}) + "\n")
    with open(os.path.join(state, "jobs"), "a") as fh:
        fh.write("%d|FAILED\n" % job_id)
out = sys.argv[sys.argv.index("--output") + 1].replace("%j", str(job_id))
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as fh:
    fh.write("slurmstepd: error: Detected 1 oom_kill event in StepId=%d.batch. Some of the step tasks "
             "have been OOM Killed.\n" % job_id)
print(job_id)
'''
# The other commands, in sh: the plugin calls sacct ten times per failed job (once per job step).
FAKE_TOOLS = r'''#!/bin/sh
case "$(basename "$0")" in
  sacct) case "$*" in *JobIdRaw,State*) cat "$FAKE_SLURM_DIR/jobs" 2>/dev/null ;; esac ;;
  scontrol) echo "MinJobAge               = 300 sec" ;;
  sacctmgr|sshare) echo "$FAKE_SLURM_ACCOUNT" ;;
  sinfo) echo "gpu*" ;;
esac
exit 0
'''
TOOLS = ["sacct", "squeue", "sinfo", "scontrol", "sacctmgr", "sshare", "scancel"]
ACCOUNT = "veripo_acct"


def fake_slurm(tmp_path: Path) -> dict:
    """A PATH whose SLURM commands are the fakes, and the environment that points them at their state."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm_state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (bin_dir / "slurm_tool").write_text(FAKE_TOOLS)
    for fake in ("sbatch", "slurm_tool"):
        (bin_dir / fake).chmod(0o755)
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(bin_dir / "slurm_tool")
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_DIR=str(state),
                FAKE_SLURM_ACCOUNT=ACCOUNT)


def site_config() -> dict:
    """A site file over the 7B config (configs/qwen25vl-7b.yaml: GRPO on 2 nodes x 8 GPUs, DPO on one
    node, evaluation on one GPU), with the base model and data in the run directory, and a constraint,
    QoS and GPU type per rule."""
    return {
        "base_model": "models/Qwen2.5-VL-7B-Instruct",
        "data": {"train_video": "data/train_video.jsonl", "train_activation": "data/train_activation.jsonl"},
        "eval": {"benchmarks": {"vsi_bench": {"questions": "data/bench/vsi_bench.json", "video_root": "data/bench"}}},
        "resources": {
            "default": {"partition": "gpu", "account": ACCOUNT},
            "grpo_train": {"cpus_per_task": 64, **SLURM_ONLY["grpo_train"]},
            "dpo_train": {"cpus_per_task": 32, **SLURM_ONLY["dpo_train"]},
            "eval_generate": {"cpus_per_task": 16, **SLURM_ONLY["eval_generate"]},
        },
    }


# The keys issue 21 adds (constraint, QoS, GPU type), per rule.
SLURM_ONLY = {
    "grpo_train": {"constraint": "ib&a100", "qos": "long", "gpu_type": "a100"},
    "dpo_train": {"qos": "normal"},
    "eval_generate": {"constraint": "a100|h100", "gpu_type": "h100"},
}


def touch(path: Path, mtime: int, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix:
        path.write_text(text)
    else:
        path.mkdir()
    os.utime(path, (mtime, mtime))


def prepare(work: Path, files: list[str]) -> None:
    """``files`` made in this order, each newer than the one before, as a finished upstream run would
    leave them (no Snakemake metadata: only their times count)."""
    for i, name in enumerate(files):
        touch(work / name, 1_700_000_000 + i, '{"pairs": 64}' if name.endswith("pair_stats.json") else "")


# Two runs, since every dpo_train is downstream of iteration 0's GRPO: grpo_train (activation stage)
# and eval_generate of the base model in one, dpo_train of iteration 1 (upstream finished) in the other.
RUNS = {
    "grpo_eval": (["data/train_activation.jsonl", "data/bench/vsi_bench.json"],
                  ["iter0/grpo/model", "base/eval/vsi_bench.predictions.jsonl"]),
    "dpo": (["data/train_activation.jsonl", "data/train_video.jsonl", "iter0/grpo/model",
             "iter0/grpo/rollouts.jsonl", "iter0/grpo/metrics.jsonl", "iter0/grpo/settings.json",
             "iter1/grpo/model", "iter1/grpo/rollouts.jsonl", "iter1/grpo/metrics.jsonl",
             "iter1/grpo/settings.json", "iter1/verifier/verdicts.jsonl", "iter1/verifier/stats.json",
             "iter1/dpo/pairs.jsonl", "iter1/dpo/pair_stats.json", "iter1/dpo/pairs_settings.json"],
            ["iter1/dpo/model"]),
}


def snakemake_cmd(work: Path, targets: list[str]) -> list[str]:
    # profiles/slurm as shipped; only the plugin's poll intervals are shortened, to keep the test fast.
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--profile", str(ROOT / "profiles" / "slurm"),
            "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
            *targets, "--configfile", str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml"),
            str(work / "site.yaml")]


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """{rule: [(sbatch options, job command), ...] by attempt} and each run's terminal output."""
    tmp = tmp_path_factory.mktemp("slurm_profile")
    env = fake_slurm(tmp)
    procs = {}
    for name, (files, targets) in RUNS.items():
        work = tmp / name
        prepare(work, files)
        (work / "site.yaml").write_text(yaml.safe_dump(site_config()))
        procs[name] = subprocess.Popen(snakemake_cmd(work, targets), cwd=work, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
    jobs: dict[str, list] = {}
    submissions = tmp / "slurm_state" / "sbatch.jsonl"
    for line in submissions.read_text().splitlines() if submissions.exists() else []:
        argv = json.loads(line)["argv"]
        opts = sbatch_options(argv)
        rule = re.match(r"rule_(\w+?)_wildcards", opts["--comment"]).group(1)
        jobs.setdefault(rule, []).append((opts, opts.get("--wrap", "")))
    return jobs, outputs


TAKES_VALUE = {"--job-name", "--output", "--comment", "-A", "-p", "-t", "--mem", "-C", "-D"}


def sbatch_options(argv: list[str]) -> dict:
    """sbatch's argv as {option: value} (True for a flag), ``--opt=v`` and ``--opt v`` alike."""
    opts, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            opts[key] = value
        elif arg in TAKES_VALUE:
            opts[arg] = argv[i + 1]
            i += 1
        else:
            opts[arg] = True
        i += 1
    return opts


def job_cli(command: str) -> dict:
    """The options of the snakemake command a job runs (its --wrap), for --cores, --latency-wait."""
    words = shlex.split(command)
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--cores", "--latency-wait", "--set-threads")}


# rule: (nodes, tasks (None: sbatch's default of one), cpus per task, gres, constraint, qos, threads of
# each process = cpus_per_task / procs_per_node, what the job's OMP_NUM_THREADS is)
EXPECTED = {
    "grpo_train": ("2", "2", "64", "gpu:a100:8", "ib&a100", "long", 8),
    "dpo_train": ("1", None, "32", "gpu:8", None, "normal", 4),
    "eval_generate": ("1", None, "16", "gpu:h100:1", "a100|h100", None, 16),
}


def attempts(submitted, rule):
    """The sbatch options and job command of each attempt of ``rule``'s job."""
    jobs, outputs = submitted
    assert rule in jobs, "no submission of " + rule + ":\n" + "\n".join(out[-3000:] for out in outputs.values())
    return jobs[rule]


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_the_slurm_profile_is_not_overridden_by_the_local_one(submitted, rule):
    (opts, command), *retries = attempts(submitted, rule)
    cpus, threads = EXPECTED[rule][2], EXPECTED[rule][6]
    assert opts["--cpus-per-task"] == cpus
    # profiles/slurm's latency-wait reaches the job; profiles/default's --cores 2 does not
    cli = job_cli(command)
    assert cli["--latency-wait"] == "60", cli
    assert cli.get("--cores") != "2", cli
    # the threads Snakemake gives the job (its OMP_NUM_THREADS) are its processes' share of the allocation
    log = next(out for out in submitted[1].values() if f"rule {rule}:" in out)
    shown = re.search(rf"rule {rule}:\n(?:    .*\n)*?    threads: (\d+)", log).group(1)
    assert int(shown) == threads
    # profiles/slurm's retries: 1 resubmits once, asking for twice the time and memory
    assert len(retries) == 1
    again = retries[0][0]
    assert int(again["-t"]) == 2 * int(opts["-t"]) and int(again["--mem"]) == 2 * int(opts["--mem"])


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_sbatch_asks_for_the_configured_resources(submitted, rule):
    (opts, _), *_ = attempts(submitted, rule)
    nodes, tasks, _, gres, constraint, qos, _ = EXPECTED[rule]
    assert opts["--nodes"] == nodes
    assert opts.get("--ntasks") == tasks
    assert "--ntasks-per-gpu" not in opts  # the launcher starts the per-GPU processes itself
    assert opts["--gres"] == gres
    assert opts.get("-C") == constraint
    assert opts.get("--qos") == qos
    assert (opts["-A"], opts["-p"]) == (ACCOUNT, "gpu")


def test_a_failed_slurm_job_prints_the_end_of_its_logs(submitted):
    _, outputs = submitted
    out = outputs["grpo_eval"]
    report = out[out.index("Why the failed jobs stopped"):]
    # the rule's log stays empty (the fake runs nothing); SLURM's own output says why
    assert "--- grpo_train: logs/grpo_train/iter0.log is empty" in report
    # the plugin names the log folder after the wildcards joined by "_": the arm prefix {run} is empty here
    assert re.search(r"--- grpo_train: \S+/slurm_logs/rule_grpo_train/_?0/\d+\.log, last 1 lines\n"
                     r"    slurmstepd: error: Detected 1 oom_kill event", report), report
