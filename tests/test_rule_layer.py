"""The rule layer as the Snakemake catalogue keeps it: snakefmt-formatted, lint-clean, and
parsed without the ML stack (the DAG is built by whatever Python runs snakemake, which on a
login node or in CI's lint job need not have torch)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from test_workflow import job_counts

WORKFLOW_FILES = ["Snakefile", "rules"]
ML_STACK = ("torch", "numpy", "transformers", "deepspeed", "av")

# Installed first on sys.path as `sitecustomize`, so it runs before snakemake starts. It refuses
# the ML stack to any import made while code of the checkout (Snakefile, rules/, veripo/) is on
# the stack. Not to every import: snakemake itself loads numpy at start-up (its SLURM executor
# plugin imports pandas), and a module already in sys.modules never reaches a meta-path finder,
# so the guard also wraps builtins.__import__, which every import statement goes through.
GUARD = textwrap.dedent('''
    import builtins
    import os
    import sys

    BLOCKED = set(os.environ["GUARD_BLOCKED"].split(","))
    ROOTS = tuple(os.environ["GUARD_ROOTS"].split(os.pathsep))
    _from_checkout = {}


    def _checkout_on_stack():
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if name not in _from_checkout:
                path = os.path.realpath(name)
                _from_checkout[name] = any(path == r or path.startswith(r + os.sep) for r in ROOTS)
            if _from_checkout[name]:
                return True
            frame = frame.f_back
        return False


    def _refuse(name):
        if name.partition(".")[0] in BLOCKED and _checkout_on_stack():
            raise ImportError(f"{name} imported by the workflow at parse time (refused by the test)")


    _import = builtins.__import__


    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            _refuse(name)
        return _import(name, globals, locals, fromlist, level)


    class Refuse:
        def find_spec(self, name, path=None, target=None):
            _refuse(name)
            return None


    builtins.__import__ = guarded_import
    sys.meta_path.insert(0, Refuse())
''')


def guarded_env(tmp_path: Path, checkout: Path = ROOT) -> dict:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    roots = [checkout / "Snakefile", checkout / "rules", checkout / "veripo"]
    python_path = os.pathsep.join(filter(None, [str(guard), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=python_path, GUARD_BLOCKED=",".join(ML_STACK),
                GUARD_ROOTS=os.pathsep.join(os.path.realpath(r) for r in roots))


def run(*args: str, env=None, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def test_snakefmt_leaves_every_workflow_file_unchanged():
    out = run("-m", "snakefmt", "--check", *WORKFLOW_FILES)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:] + "\nrun: snakefmt Snakefile rules"


@pytest.mark.parametrize("configfile", [None, "configs/qwen25vl-7b.yaml"])
def test_snakemake_lint_finds_nothing(tmp_path, configfile):
    extra = ["--configfile", str(ROOT / configfile)] if configfile else []
    out = run("-m", "snakemake", "--lint", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), *extra)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in text, text[-3000:]


def test_the_guard_refuses_the_ml_stack_to_the_checkout(tmp_path):
    """Without this the test below could pass with a guard that refuses nothing: the same guard
    makes veripo's modules that need the stack fail, also when numpy is already loaded."""
    env = guarded_env(tmp_path)
    out = run("-c", "import veripo.model.policy", env=env)
    assert out.returncode != 0 and "refused by the test" in out.stderr, out.stderr[-2000:]
    out = run("-c", "import numpy, veripo.media.decode", env=env)
    assert out.returncode != 0 and "numpy imported by the workflow" in out.stderr, out.stderr[-2000:]
    assert run("-c", "import numpy, veripo.config", env=env).returncode == 0


def test_the_dag_builds_without_the_ml_stack(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = run("-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2",
              "-n", "iter3/eval/vsi_bench.json", env=guarded_env(tmp_path))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "refused by the test" not in text
    jobs = job_counts(text)
    assert (jobs["grpo_train"], jobs["dpo_train"], jobs["eval_score"]) == (4, 3, 1), jobs
