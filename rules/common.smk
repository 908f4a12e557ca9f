# Config validation, wildcard constraints and the input functions (get_*) that unroll
# the iterations: iteration k reads iteration k-1's model and the queries its curriculum
# kept.
#
# All of this runs while the DAG is built, also under `snakemake --lint` in an env with
# snakemake alone: the modules imported here need only the standard library, PyYAML and
# jsonschema, never the ML stack (tests/test_rule_layer.py checks it). `veripo` imports
# from this checkout because Snakemake puts the Snakefile's folder first on sys.path.
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from veripo.arms import RUN_WILDCARD, has_dpo, run_config, run_prefix
from veripo.config import ConfigError, grpo_stage, rule_settings, validate_config
from veripo.eval.settings import check_benchmarks, job_settings
from veripo.verify.gate import dpo_gate

try:
    validate_config(config)
    check_benchmarks(config["eval"])
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# Shell commands interpolate every value as {name:q} (shlex-quoted by Snakemake, element
# by element for lists): paths come from the config and from wherever the checkout lies,
# and a space, a quote or a `$(...)` in them must reach the script as one literal
# argument, never as shell syntax. Quoting keeps the commands readable and log,
# benchmark and --sdm conda working as for any shell directive, which running the
# scripts from Python (run/script directives) would not.
SCRIPTS = os.path.join(workflow.basedir, "scripts")
# The interpreter running snakemake has the stack when installed with the README's
# command; under --sdm conda each rule's env provides `python`.
DEPLOYMENT = str(getattr(workflow.deployment_settings, "deployment_method", ""))
PYTHON = "python" if "conda" in DEPLOYMENT else sys.executable
TINY = config["base_model"] == "tiny"
BENCHMARKS = list(config["eval"]["benchmarks"])
# eval_score asks the judge for the inconsistency rate: an hf judge needs the torch env.
JUDGE_NEEDS_TORCH = config["verifier"]["judge"]["backend"] == "hf"
SYN = config["data"]["synthetic"]
SYN_BENCHMARKS = {
    name: f"data/bench/{name}.json"
    for name in ["vsi_bench", *SYN.get("benchmark_sizes", {})]
}
SLURM_KEYS = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "slurm_extra": "slurm_extra",
}


# {run} prefixes an arm's chain (arms/<arm>/seed<S>/, config `arms`); empty for the configured
# chain, so iterK/... keeps its paths.
wildcard_constraints:
    run=RUN_WILDCARD,
    iter=r"\d+",
    bench="|".join(BENCHMARKS),
    ckpt=r"base|" + RUN_WILDCARD + r"iter\d+",
    evaldir=r"eval|eval_grpo",


def get_final_output():
    """The default target: the last iteration scored on the benchmarks the report plots,
    and the report's figures."""
    return [
        *expand(
            "iter{iter}/eval/{bench}.json",
            iter=config["iterations"],
            bench=config["report"]["benchmarks"],
        ),
        *rules.report_figures.output,
    ]


def run_summary():
    """Where a finished run's results are, and how to make its report (onsuccess)."""
    here = os.getcwd()
    scores = [
        p for p in get_final_output() if p.endswith(".json") and os.path.exists(p)
    ]
    lines = ["", f"Run directory: {here}"]
    lines += [f"  scores:  {os.path.join(here, p)}" for p in scores]
    if os.path.isdir("figures"):
        lines.append(f"  figures: {os.path.join(here, 'figures')}")
    lines.append(
        "  report:  snakemake --report report.html  "
        f"(then open {os.path.join(here, 'report.html')})"
    )
    return "\n".join(lines)


def uses_vllm(rule):
    """Whether the rule's job runs vLLM with this config: GRPO sampling through it, an
    evaluation on it, or its judge (the score's too). "auto" picks vLLM only where it
    imports: GRPO's auto gets the vLLM env (it holds the trainer's packages too), so a GPU
    job samples with vLLM; eval's auto keeps the eval env."""
    return {
        "grpo_train": config["grpo"].get("rollout_backend") in ("vllm", "auto"),
        "eval_generate": config["eval"]["backend"] == "vllm",
        "verifier_judge": config["verifier"]["judge"]["backend"] == "vllm",
        # the score's inconsistency rate asks the judge
        "eval_score": config["verifier"]["judge"]["backend"] == "vllm",
    }.get(rule, False)


def conda_env(rule, default):
    """The rule's env file under --sdm conda: envs/vllm.yaml when the job runs vLLM (vLLM
    cannot share an env with the other pins), else ``default``."""
    return "../envs/vllm.yaml" if uses_vllm(rule) else f"../envs/{default}.yaml"


def interpreter(rule):
    """Python of the rule's job: the conda env's, else config ``vllm_python`` for a job
    that runs vLLM (its own venv), else the one running snakemake."""
    if "conda" not in DEPLOYMENT and uses_vllm(rule) and config.get("vllm_python"):
        return config["vllm_python"]
    return PYTHON


def python_script(name):
    """argv prefix running scripts/<name>.py (rule ``name``'s interpreter)."""
    return [interpreter(name), os.path.join(SCRIPTS, f"{name}.py")]


def launcher(name):
    """argv prefix running scripts/<name>.py under scripts/launch.py with the processes
    of the rule ``name``."""
    r = rule_settings(config, name)
    return [
        interpreter(name),
        os.path.join(SCRIPTS, "launch.py"),
        *("--nodes", str(r["nodes"]), "--procs-per-node", str(r["procs_per_node"])),
        *("--port", str(config["train"]["master_port"]), "--mpi", "srun"),
        *("--", os.path.join(SCRIPTS, f"{name}.py")),
    ]


def as_json(obj):
    """A config section as one JSON argument (shell commands quote it with :q)."""
    return json.dumps(obj, sort_keys=True)


def policy_args(*sections, cfg=None):
    """The policy's settings (and the named ``sections``) of the chain configured by ``cfg``
    (default: the configured chain)."""
    conf = config if cfg is None else cfg
    out = {
        "dtype": config["dtype"],
        "attn_implementation": config.get("attn_implementation"),
        "prompts": config["prompts"],
        "media": config["media"],
        "train": config["train"],
        "max_question_chars": config["data"]["max_question_chars"],
    }
    for s in sections:
        out[s] = conf[s]
    return out


def rule_resources(name):
    """Resources of the rule ``name`` from config ``resources`` (its entry over
    ``default``), in the SLURM executor plugin's names. runtime and mem_mb grow with the
    attempt, so --retries asks for more."""
    r = rule_settings(config, name)
    out = {
        "runtime": lambda wc, attempt: r["runtime"] * attempt,
        "mem_mb": lambda wc, attempt: r["mem_mb"] * attempt,
        "cpus_per_task": r["cpus_per_task"],
        "nodes": r["nodes"],
        # one task per node: the launcher (veripo/train/launch.py) starts its processes
        "tasks": r["nodes"],
        "procs_per_node": r["procs_per_node"],
    }
    if r["gpus_per_node"]:
        # per node; `gpu=N` would mean N for the whole job
        out["gres"] = f"gpu:{r['gpus_per_node']}"
        # Without this the plugin asks for --ntasks-per-gpu=<tasks> and the job step
        # runs the command once per GPU (plugin issues #316/#459); our launcher starts
        # the per-GPU processes itself.
        out["tasks_per_gpu"] = 0
    for key, plugin_key in SLURM_KEYS.items():
        if r[key]:
            out[plugin_key] = r[key]
    return out


def rule_threads(name):
    """Threads of each process of the rule ``name`` (Snakemake exports them as
    OMP_NUM_THREADS): its cpus_per_task shared by its procs_per_node processes."""
    r = rule_settings(config, name)
    return max(1, r["cpus_per_task"] // r["procs_per_node"])


def training_resources(name):
    """As rule_resources; on several nodes plus mpi="srun": the job step then runs the
    command once, without its own srun, and the launcher runs `srun -n <nodes>` itself
    (one launcher per node). On one node the job step's own single-task srun runs the
    launcher (the plugin refuses mpi with one task)."""
    res = rule_resources(name)
    return {**res, "mpi": "srun"} if res["nodes"] > 1 else res


def base_model():
    """The base model as the scripts take it: the tiny one built here, a path or a hub
    id."""
    return "base/model" if TINY else config["base_model"]


def model_of_iteration(k, run=""):
    """Checkpoint that ends iteration k of the chain under ``run``: activation GRPO for 0,
    DPO for k >= 1 (GRPO in an arm without DPO)."""
    k = int(k)
    if k == 0 or not has_dpo(config, run):
        return f"{run}iter{k}/grpo/model"
    return f"{run}iter{k}/dpo/model"


def cfg_of(wildcards):
    """The config of the chain the job belongs to (an arm's, or the configured one)."""
    return run_config(config, wildcards.run)


def as_model_input(model):
    """The input list naming ``model``, empty for a configured base model: that comes
    from outside the workflow (a hub id or the user's folder); the tiny one is built
    here."""
    return [] if model == config["base_model"] else [model]


def get_grpo_start_model(wildcards):
    k = int(wildcards.iter)
    return base_model() if k == 0 else model_of_iteration(k - 1, wildcards.run)


def get_grpo_start_input(wildcards):
    return as_model_input(get_grpo_start_model(wildcards))


def get_grpo_queries(wildcards):
    k = int(wildcards.iter)
    if k == 0:
        return config["data"]["train_activation"]
    if k == 1:
        return config["data"]["train_video"]
    return f"{wildcards.run}iter{k - 1}/data/train_video.jsonl"


def get_grpo_stage_name(wildcards):
    return "activation" if int(wildcards.iter) == 0 else "video"


def get_grpo_config(wildcards):
    stage = grpo_stage(cfg_of(wildcards), int(wildcards.iter))
    return as_json({**policy_args(), "grpo": stage})


def get_verifier_sample_config(wildcards):
    stage = grpo_stage(cfg_of(wildcards), int(wildcards.iter))
    rollouts = cfg_of(wildcards)["verifier"]["rollouts"]
    return as_json({**policy_args(), "grpo": stage, "rollouts": rollouts})


def get_verifier_rollouts(wildcards):
    """What the verifier judges: the GRPO stage's logged rollouts, or a fresh sampling
    pass (verifier.rollouts.source)."""
    if cfg_of(wildcards)["verifier"]["rollouts"]["source"] == "fresh":
        return f"{wildcards.run}iter{wildcards.iter}/verifier/rollouts.jsonl"
    return f"{wildcards.run}iter{wildcards.iter}/grpo/rollouts.jsonl"


def dpo_decision(wildcards, stats_path, on_too_few):
    with open(stats_path) as fh:
        n_pairs = json.load(fh)["pairs"]
    min_pairs = cfg_of(wildcards)["dpo"]["min_pairs"]
    return dpo_gate(int(wildcards.iter), n_pairs, min_pairs, on_too_few)


# Iterations whose skip was announced: Snakemake calls get_dpo_pairs more than once.
_ANNOUNCED = set()


def get_dpo_pairs(wildcards):
    """dpo_train's pairs, decided once dpo_build_pairs (a checkpoint) has counted
    them."""
    out = checkpoints.dpo_build_pairs.get(run=wildcards.run, iter=wildcards.iter).output
    gate = dpo_decision(wildcards, out.stats, cfg_of(wildcards)["dpo"]["on_too_few_pairs"])
    if gate["decision"] == "stop":
        raise WorkflowError(gate["message"])
    if gate["decision"] == "skip":
        if (wildcards.run, wildcards.iter) not in _ANNOUNCED:
            _ANNOUNCED.add((wildcards.run, wildcards.iter))
            logger.warning(gate["message"])
        return f"{wildcards.run}iter{wildcards.iter}/dpo/pairs_skipped.jsonl"
    return out.pairs


def get_dpo_skip_message(wildcards, input):
    return dpo_decision(wildcards, input.stats, "skip")["message"]


def get_eval_model(wildcards):
    """Checkpoint evaluated under {ckpt}/{evaldir}: a directory, or the base model's hub
    id."""
    if wildcards.ckpt == "base":
        if wildcards.evaldir != "eval":
            raise WorkflowError(
                f"base/{wildcards.evaldir}: the base model has no GRPO checkpoint; "
                "use base/eval/"
            )
        return base_model()
    run, _, k = wildcards.ckpt.rpartition("iter")
    if wildcards.evaldir == "eval_grpo":
        return f"{run}iter{k}/grpo/model"
    return model_of_iteration(k, run)


def get_eval_model_input(wildcards):
    return as_model_input(get_eval_model(wildcards))


def get_eval_baseline_predictions(wildcards):
    """The predictions of eval.paired_baseline's checkpoint (of the same chain) on the
    benchmark, which the score's paired difference is taken against; none for that
    checkpoint itself or without a baseline."""
    baseline = config["eval"].get("paired_baseline")
    if baseline is None or wildcards.evaldir != "eval":
        return []
    run = "" if wildcards.ckpt == "base" else wildcards.ckpt.rpartition("iter")[0]
    ckpt = baseline if baseline == "base" else f"{run}{baseline}"
    if ckpt == wildcards.ckpt:
        return []
    return [f"{ckpt}/eval/{wildcards.bench}.predictions.jsonl"]


def get_eval_questions(wildcards):
    return config["eval"]["benchmarks"][wildcards.bench]["questions"]


def get_eval_video_root(wildcards):
    return config["eval"]["benchmarks"][wildcards.bench]["video_root"]


def get_eval_config(wildcards):
    return as_json(job_settings(config, wildcards.bench))
