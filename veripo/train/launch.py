"""Start a training script on the processes a job was given: exactly one launcher per node.

    python -m veripo.train.launch --nodes N --procs-per-node P --port PORT [--mpi srun] -- SCRIPT ARGS...

- Not under SLURM: P == 1 runs SCRIPT in this process's place; P > 1 starts torchrun on this host.
- Under SLURM with N > 1 (a job that got --nodes N): runs ``{mpi} -n N --ntasks-per-node=1`` of this
  launcher, so one task per node starts torchrun with node rank SLURM_NODEID and the rendezvous on the
  allocation's first node (static rendezvous: node rank 0 hosts the store).
- Under SLURM with N == 1: as without SLURM, on the allocated node.
"""
from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys

STEP_MARK = "VERIPO_LAUNCH_IN_STEP"


def _first_node_addr() -> str:
    """Address of the allocation's first node: its NodeAddr in slurm.conf (several "nodes" may share
    one host in a test cluster, where only NodeAddr resolves), else its host name."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "")
    try:
        first = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        info = subprocess.run(["scontrol", "show", "node", first, "-o"], capture_output=True, text=True,
                              check=True).stdout
        for field in info.split():
            if field.startswith("NodeAddr="):
                return field.split("=", 1)[1]
        return first
    except (OSError, subprocess.CalledProcessError, IndexError):
        return socket.gethostname()


def plan(nodes: int, procs: int, port: int, mpi: str, script: list[str], env: dict) -> list[str]:
    """The command this launcher replaces itself with (pure: tested without SLURM)."""
    under_slurm = "SLURM_JOB_ID" in env
    if under_slurm and nodes > 1 and env.get(STEP_MARK) != "1":
        return [*shlex.split(mpi or "srun"), "-n", str(nodes), "--ntasks-per-node=1", "--nodes", str(nodes),
                "--export=ALL," + STEP_MARK + "=1", sys.executable, "-m", "veripo.train.launch", "--nodes", str(nodes),
                "--procs-per-node", str(procs), "--port", str(port), "--", *script]
    if under_slurm and nodes > 1:
        node_rank = int(env.get("SLURM_NODEID", "0"))
        master = env.get("VERIPO_MASTER_ADDR") or _first_node_addr()
        return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--node_rank={node_rank}",
                f"--nproc_per_node={procs}", f"--master_addr={master}", f"--master_port={port}", *script]
    if procs > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--node_rank=0",
                f"--nproc_per_node={procs}", "--master_addr=127.0.0.1", f"--master_port={port}", *script]
    return [sys.executable, *script]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--procs-per-node", type=int, default=1)
    ap.add_argument("--port", type=int, default=29611)
    ap.add_argument("--mpi", default="srun", help="launcher of one task per node (the rule's resources.mpi)")
    ap.add_argument("script", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    script = a.script[1:] if a.script[:1] == ["--"] else a.script
    if not script:
        ap.error("no script given after --")
    env = dict(os.environ)
    # srun'd launchers and torchrun's workers import veripo from this checkout
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # veripo/train/ -> checkout
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    # Jobs sharing a first node must not share a rendezvous port; the in-step launchers got it already.
    offset = int(env["SLURM_JOB_ID"]) % 1000 if "SLURM_JOB_ID" in env and env.get(STEP_MARK) != "1" else 0
    cmd = plan(a.nodes, a.procs_per_node, a.port + offset, a.mpi, script, env)
    print("launch:", shlex.join(cmd), file=sys.stderr, flush=True)
    if cmd[:1] == [sys.executable] and cmd[1:3] != ["-m", "torch.distributed.run"]:
        env.setdefault("WORLD_SIZE", "1")
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
