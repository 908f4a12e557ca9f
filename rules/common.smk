# Config validation at parse time, wildcard constraints and the input functions that unroll the
# iterations: iteration k reads iteration k-1's model and curriculum-filtered queries.
import json
import sys

sys.path.insert(0, workflow.basedir)

from veripo.config import ConfigError, grpo_stage, rule_settings, validate_config

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# Shell commands interpolate every value as {name:q} (shlex-quoted by Snakemake, element by element
# for lists): paths come from the config and from wherever the checkout lies, and a space, a quote or
# a `$(...)` in them must reach the script as one literal argument, never as shell syntax. Quoting
# keeps the commands readable and log, benchmark and --sdm conda working as for any shell directive,
# which running the scripts from Python (run/script directives) would not.
SCRIPTS = os.path.join(workflow.basedir, "scripts")
# The interpreter running snakemake has the stack when installed with the README's command; under
# --sdm conda each rule's env provides `python`.
PYTHON = "python" if "conda" in str(getattr(workflow.deployment_settings, "deployment_method", "")) else sys.executable
TINY = config["base_model"] == "tiny"
BENCHMARKS = list(config["eval"]["benchmarks"])


wildcard_constraints:
    iter=r"\d+",
    bench="|".join(BENCHMARKS),


def as_json(obj):
    """A config section as one JSON argument (shell commands quote it with :q)."""
    return json.dumps(obj, sort_keys=True)


def python_script(name):
    """argv prefix running scripts/<name>.py."""
    return [PYTHON, os.path.join(SCRIPTS, f"{name}.py")]


def base_model_path():
    return "base/model" if TINY else config["base_model"]


def base_model_input(wildcards=None):
    return ["base/model"] if TINY else []


def model_of_iteration(k):
    """Checkpoint that ends iteration k: activation GRPO for 0, DPO for k >= 1."""
    k = int(k)
    return "iter0/grpo/model" if k == 0 else f"iter{k}/dpo/model"


def grpo_start_model(wildcards):
    k = int(wildcards.iter)
    return base_model_path() if k == 0 else model_of_iteration(k - 1)


def grpo_start_input(wildcards):
    k = int(wildcards.iter)
    return base_model_input() if k == 0 else [model_of_iteration(k - 1)]


def grpo_queries(wildcards):
    k = int(wildcards.iter)
    if k == 0:
        return config["data"]["train_activation"]
    if k == 1:
        return config["data"]["train_video"]
    return f"iter{k - 1}/data/train_video.jsonl"


def verifier_rollouts(wildcards):
    """What the verifier judges: the GRPO stage's logged rollouts, or a fresh sampling pass (verifier.rollouts.source)."""
    if config["verifier"]["rollouts"]["source"] == "fresh":
        return f"iter{wildcards.iter}/verifier/rollouts.jsonl"
    return f"iter{wildcards.iter}/grpo/rollouts.jsonl"


def policy_args(*sections):
    cfg = {"dtype": config["dtype"], "attn_implementation": config.get("attn_implementation"),
           "prompts": config["prompts"], "media": config["media"], "train": config["train"]}
    for s in sections:
        cfg[s] = config[s]
    return cfg


def grpo_args(wildcards):
    cfg = policy_args()
    cfg["grpo"] = grpo_stage(config, int(wildcards.iter))
    return as_json(cfg)


def rule_resources(name):
    """Resources of rule ``name`` from config ``resources`` (its entry over ``default``), in the
    SLURM executor plugin's names. runtime and mem_mb grow with the attempt, so --retries asks for more."""
    r = rule_settings(config, name)
    out = {
        "runtime": lambda wc, attempt: r["runtime"] * attempt,
        "mem_mb": lambda wc, attempt: r["mem_mb"] * attempt,
        "cpus_per_task": r["cpus_per_task"],
        "nodes": r["nodes"],
        # one task per node: the launcher (veripo/train/launch.py) starts the node's processes itself
        "tasks": r["nodes"],
        "procs_per_node": r["procs_per_node"],
    }
    if r["gpus_per_node"]:
        out["gres"] = f"gpu:{r['gpus_per_node']}"  # per node; `gpu=N` would mean N for the whole job
        # Without this the plugin asks for --ntasks-per-gpu=<tasks> and the job step runs the command
        # once per GPU (plugin issues #316/#459); our launcher starts the per-GPU processes itself.
        out["tasks_per_gpu"] = 0
    for key, plugin_key in (("partition", "slurm_partition"), ("account", "slurm_account"),
                            ("slurm_extra", "slurm_extra")):
        if r[key]:
            out[plugin_key] = r[key]
    return out


def training_resources(name):
    """As rule_resources; on several nodes plus mpi="srun": the job step then runs the rule's command
    once, without its own srun, and the launcher runs `srun -n <nodes>` itself (one launcher per node).
    On one node the job step's own single-task srun runs the launcher (the plugin refuses mpi with one task)."""
    res = rule_resources(name)
    return {**res, "mpi": "srun"} if res["nodes"] > 1 else res


def launcher(name):
    """argv prefix running scripts/<name>.py under scripts/launch.py with rule ``name``'s processes."""
    r = rule_settings(config, name)
    return [*python_script("launch"), "--nodes", str(r["nodes"]), "--procs-per-node", str(r["procs_per_node"]),
            "--port", str(config["train"]["master_port"]), "--mpi", "srun", "--", os.path.join(SCRIPTS, f"{name}.py")]


# Evaluation: which checkpoint {ckpt}/{evaldir} names, and the benchmark's settings.
from veripo.eval.settings import check_benchmarks, job_settings

try:
    check_benchmarks(config["eval"])
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


def bench_cfg(wildcards):
    return config["eval"]["benchmarks"][wildcards.bench]


def eval_model(wildcards):
    """Checkpoint evaluated under {ckpt}/{evaldir}: a directory, or the base model's hub id."""
    if wildcards.ckpt == "base":
        if wildcards.evaldir != "eval":
            raise WorkflowError(f"base/{wildcards.evaldir}: the base model has no GRPO checkpoint; use base/eval/")
        return base_model_path()
    k = int(wildcards.ckpt.removeprefix("iter"))
    return f"iter{k}/grpo/model" if wildcards.evaldir == "eval_grpo" else model_of_iteration(k)


def eval_model_input(wildcards):
    return base_model_input() if wildcards.ckpt == "base" else [eval_model(wildcards)]


# DPO gate: dpo_train's pair input, decided once dpo_build_pairs (a checkpoint) has counted the pairs.
from snakemake.logging import logger

from veripo.verify.gate import dpo_gate

_ANNOUNCED = set()


def dpo_train_pairs(wildcards):
    out = checkpoints.dpo_build_pairs.get(iter=wildcards.iter).output
    with open(out.stats) as fh:
        n_pairs = json.load(fh)["pairs"]
    gate = dpo_gate(int(wildcards.iter), n_pairs, config["dpo"]["min_pairs"], config["dpo"]["on_too_few_pairs"])
    if gate["decision"] == "stop":
        raise WorkflowError(gate["message"])
    if gate["decision"] == "skip":
        if wildcards.iter not in _ANNOUNCED:
            _ANNOUNCED.add(wildcards.iter)
            logger.warning(gate["message"])
        return f"iter{wildcards.iter}/dpo/pairs_skipped.jsonl"
    return out.pairs
