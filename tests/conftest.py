"""Shared fixtures: a tiny Qwen2.5-VL built offline and a small synthetic video set, once per session."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from veripo.media.torchvision_cpu import apply as _apply_torchvision_cpu_shim

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_apply_torchvision_cpu_shim()  # before any test imports transformers' processors


REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "veripo-data"


@pytest.fixture(scope="session")
def real_benchmark():
    """``real_benchmark(name)``: the path of a real public benchmark question file, or a skip.

    Those files are fetched data and are never committed: they live in ``../shared/veripo-data/``
    next to the repository (CI has them there), or in the folder ``$VERIPO_DATA`` names."""
    folder = Path(os.environ.get("VERIPO_DATA") or REAL_DATA)

    def path(name: str) -> Path:
        file = folder / f"{name}.json"
        if not file.is_file():
            pytest.skip(f"real benchmark question files not found at {folder} (set VERIPO_DATA): "
                        f"{file.name} is fetched public data, kept out of the repository")
        return file

    return path


VLLM_PYTHON = Path(os.environ.get("VERIPO_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The interpreter of the vLLM venv (``scripts/setup_vllm_env.sh`` builds ``.venv-vllm``; the README's
    test command runs it first), or a skip saying how to get one. vLLM cannot share the main venv (numpy
    pins conflict), so the vLLM side of a test runs there, in a subprocess."""
    if not os.access(VLLM_PYTHON, os.X_OK):
        pytest.skip(f"no vLLM interpreter at {VLLM_PYTHON}: run scripts/setup_vllm_env.sh (the README's test "
                    "command does) or point VERIPO_VLLM_PYTHON at a Python with vllm")
    return str(VLLM_PYTHON)


@pytest.fixture(scope="session")
def vllm_env() -> dict:
    """The environment of a vLLM process in the tests: the engine in the calling process (no engine-core
    process to start), eager mode (no torch.compile warm-up), a 1 GiB KV cache, the checkout importable."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1",
                VLLM_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(ROOT) + (os.pathsep + path if path else ""))


# vLLM engine options of the tests (eval.vllm / verifier.judge.engine_args): no CUDA graphs or
# torch.compile, and a context that fits the tiny models.
VLLM_TEST_ENGINE = {"enforce_eager": True, "max_model_len": 4096}


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, default_config) -> str:
    from veripo.model.tiny import build_tiny_qwen25vl

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_qwen25vl(str(out), default_config["tiny_model"], default_config["prompts"].values())
    return str(out)


@pytest.fixture(scope="session")
def video_set(tmp_path_factory) -> list[dict]:
    """Colour questions on 16 synthetic videos (records with resolved paths)."""
    from veripo import jsonio
    from veripo.data import queries
    from veripo.data import synthetic

    d = tmp_path_factory.mktemp("videos")
    recs = synthetic.make_video_set(d, 16, seed=11, tasks=["color"], size=64, fps=8, seconds=1.0)
    jsonio.write_jsonl(d / "q.jsonl", recs)
    return queries.load_queries(str(d / "q.jsonl"))


@pytest.fixture(scope="session")
def media(default_config) -> dict:
    return dict(default_config["media"])


@pytest.fixture(scope="session")
def templates(default_config) -> dict:
    return default_config["prompts"]


@pytest.fixture()
def tiny_policy(tiny_dir, media):
    from veripo.model import policy

    model, processor = policy.load_policy(tiny_dir)
    policy.configure_processor(processor, media)
    return model, processor


FAIL_ONCE = """\
import os
import sys

# Written by tests/conftest.py's fail_once_env: scripts/{script}.py fails on its first run, runs normally after.
if os.path.basename(sys.argv[0] if sys.argv else "") == "{script}.py" and not os.path.exists({marker!r}):
    open({marker!r}, "w").close()
    sys.stderr.write("error: failing once on purpose (test fault injection, marker {marker})\\n")
    sys.stderr.flush()
    os._exit(3)  # SystemExit raised while site imports this module would abort the interpreter's start
"""


def fail_once_env(hook_dir, script, marker):
    """The environment of a run in which scripts/<script>.py fails once (exit 3, creating ``marker``) and
    runs normally afterwards: a sitecustomize first on PYTHONPATH, which every Python process of the run
    imports at start, so the fault stays in the tests and reaches any process that inherits the
    environment. SLURM jobs do: the executor plugin submits with sbatch --export=ALL."""
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(FAIL_ONCE.format(script=script, marker=str(marker)))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(hook_dir) + (os.pathsep + path if path else ""))


def small_config(default: dict, iterations: int = 2) -> dict:
    """The default config, shortened: fewer warm-up steps and synthetic items, ``iterations`` iterations."""
    from veripo.config import validate_config

    cfg = copy.deepcopy(default)
    cfg["iterations"] = iterations
    cfg["warmup"]["steps"] = 150
    syn = cfg["data"]["synthetic"]
    syn.update(n_warmup=24, n_train_video=8, n_train_activation=4, n_benchmark=6,
               benchmark_sizes={name: 4 for name in syn["benchmark_sizes"]})
    return validate_config(cfg)


def snakemake(workdir: Path, cfg: dict, *args, timeout=1500, env=None) -> subprocess.CompletedProcess:
    cfg_path = workdir / "test_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args, "--configfile", str(cfg_path)]
    # Its own session, so that a timeout stops the jobs snakemake started too: a job left running
    # would go on writing into the run directory (and clear step checkpoints a rerun resumes from).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_counts(text: str) -> dict:
    """{rule: jobs} from snakemake's "Job stats" table."""
    counts = {}
    for line in text.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


# What the finished_run fixture builds: the shortened chain scored, with its report figures.
FINISHED_RUN_TARGETS = ["iter2/eval/vsi_bench.json", "report_figures"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, default_config) -> Path:
    """A run directory where the shortened default chain (2 iterations) has finished, built once per
    session and shared: tests read it and copy what they alter. Its config is ``test_config.yaml``."""
    workdir = tmp_path_factory.mktemp("finished_run")
    out = snakemake(workdir, small_config(default_config, iterations=2), *FINISHED_RUN_TARGETS)
    if out.returncode != 0:
        pytest.fail("the shortened default chain failed:\n" + out.stderr[-5000:])
    (workdir / "snakemake.out").write_text(out.stdout + out.stderr)
    return workdir
