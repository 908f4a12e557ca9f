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
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from veripo.arms import RUN_WILDCARD, has_dpo, run_config, run_prefix
from veripo.config import ConfigError, grpo_stage, rule_settings, validate_config
from veripo.eval.settings import check_benchmarks, job_settings
from veripo.report.run_end import failed_job_report, run_summary
from veripo.run_settings import split as split_run_settings
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
# config resources key -> the SLURM plugin's resource (2.8.0 turns qos into --qos and constraint
# into -C, and refuses both inside slurm_extra); empty values are left out, so sbatch gets the
# cluster's defaults.
SLURM_KEYS = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "qos": "qos",
    "constraint": "constraint",
    "slurm_extra": "slurm_extra",
}


# {run} prefixes an arm's chain (arms/<arm>/seed<S>/, config `arms`); empty for the configured
# chain, so iterK/... keeps its paths.
wildcard_constraints:
    run=RUN_WILDCARD,
    iter=r"\d+",
    bench="|".join(BENCHMARKS),
    ckpt=rf"base|{RUN_WILDCARD}iter\d+",
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


def requested_files():
    """The files this run was asked for: its file targets, the outputs of its rule targets,
    and the inputs of a target rule without outputs (rule all, the default)."""
    dag = workflow.dag
    jobs = [str(f) for job in dag.targetjobs for f in (job.output or job.input)]
    return {*map(str, dag.targetfiles), *jobs}


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


# The interpreter and the scripts' absolute paths are where this checkout and its venv lie
# (another interpreter under --sdm conda), not what a job computes: as params Snakemake
# compares, they made a run directory or checkout that moved plan every job again. So the
# command's start is a NotARerunTrigger, shell-quoted here: rules use it as {params.cmd},
# the one value they interpolate without :q.
def python_script(name):
    """Start of the command running scripts/<name>.py (rule ``name``'s interpreter)."""
    return NotARerunTrigger(
        shlex.join([interpreter(name), os.path.join(SCRIPTS, f"{name}.py")])
    )


def launcher(name):
    """Start of the command running a training script under scripts/launch.py: then come
    launch_ranks(name), "--" and script_path(name). The rendezvous port is a run setting
    (veripo/run_settings.py)."""
    return NotARerunTrigger(
        shlex.join(
            [
                interpreter(name),
                os.path.join(SCRIPTS, "launch.py"),
                *("--port", str(config["train"]["master_port"]), "--mpi", "srun"),
            ]
        )
    )


def launch_ranks(name):
    """The launcher's process layout (nodes, processes per node) of the rule ``name``, a
    param Snakemake compares, since the number of ranks shapes the training (per-rank
    sampling seeds, the batch split)."""
    r = rule_settings(config, name)
    return ["--nodes", str(r["nodes"]), "--procs-per-node", str(r["procs_per_node"])]


def script_path(name):
    return NotARerunTrigger(os.path.join(SCRIPTS, f"{name}.py"))


def as_json(obj):
    """A config section as one JSON argument (shell commands quote it with :q)."""
    return json.dumps(obj, sort_keys=True)


class NotARerunTrigger:
    """A params value Snakemake leaves out of its params rerun trigger, which records values of
    builtin types only: for settings that change no result, so that editing them reruns
    nothing. Formats as its text."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


# --tracking of the training scripts: live TensorBoard/W&B logging changes no result.
TRACKING = NotARerunTrigger(as_json(config["tracking"]))


def settings_params(settings, root=""):
    """Params ``cfg`` and ``run`` of a job whose settings (its --config) are
    ``settings(wildcards)``, ``root`` the config key they are the value of: ``cfg`` what
    shapes its result, compared by Snakemake; ``run`` its run settings (ports, checkpoint
    cadence, memory-only knobs: veripo/run_settings.py, whose list the resume fingerprints
    share), not compared, which the script merges back (--run-settings)."""
    return {
        "cfg": lambda wc: as_json(split_run_settings(settings(wc), root)[0]),
        "run": lambda wc: NotARerunTrigger(
            as_json(split_run_settings(settings(wc), root)[1])
        ),
    }


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
        # per node, typed through GRES (gpu:<type>:N); the plugin's `gpu`/`gpu_model` would
        # ask --gpus for the whole job instead
        gpu = ["gpu", r["gpu_type"], str(r["gpus_per_node"])]
        out["gres"] = ":".join(part for part in gpu if part)
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


def get_grpo_settings(wildcards):
    stage = grpo_stage(cfg_of(wildcards), int(wildcards.iter))
    return {**policy_args(), "grpo": stage}


def get_verifier_sample_settings(wildcards):
    stage = grpo_stage(cfg_of(wildcards), int(wildcards.iter))
    rollouts = cfg_of(wildcards)["verifier"]["rollouts"]
    return {**policy_args(), "grpo": stage, "rollouts": rollouts}


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
    gate = dpo_decision(
        wildcards, out.stats, cfg_of(wildcards)["dpo"]["on_too_few_pairs"]
    )
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
    path = config["eval"]["benchmarks"][wildcards.bench]["questions"]
    # Snakemake would only say "MissingInputException" for a file no rule writes; with own
    # data the benchmarks are the user's to fetch, or synthetic ones on request.
    written = {os.path.normpath(p) for p in SYN_WRITTEN_BENCHMARKS.values()}
    if not os.path.exists(path) and os.path.normpath(path) not in written:
        raise WorkflowError(
            f"config key 'eval.benchmarks.{wildcards.bench}.questions': {path} does not "
            "exist, and data.synthetic does not write it (enabled: false); put the "
            "benchmark's question file there, or add benchmarks to data.synthetic.keep "
            "for synthetic ones"
        )
    return path


def get_eval_video_root(wildcards):
    return config["eval"]["benchmarks"][wildcards.bench]["video_root"]


def get_eval_settings(wildcards):
    return job_settings(config, wildcards.bench)
