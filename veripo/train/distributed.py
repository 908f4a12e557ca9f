"""Process-group helpers: one process, or one rank of a torchrun/srun job (gloo on CPU, NCCL on GPU)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(engine: str) -> Dist:
    """Join the process group torchrun set up (WORLD_SIZE > 1), or a group of one for DeepSpeed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        # before the process group: NCCL binds each rank to the current device when it starts
        torch.cuda.set_device(local)
    if world > 1 or engine == "deepspeed":
        if not dist.is_initialized():
            if world == 1:
                # A group of one needs no agreed port; an inherited MASTER_PORT (a parent that is itself
                # a group of one, e.g. a test process) would be taken already.
                os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
                                  LOCAL_RANK="0", WORLD_SIZE="1")
            import deepspeed

            if not torch.cuda.is_available():
                # DeepSpeed's CPU backend would compile its shared-memory all-reduce op (g++, tens of
                # seconds on a machine's first job) for inference_all_reduce, which training never calls.
                deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                                       verbose=False)
    return Dist(rank, world, local)


def device() -> torch.device:
    """This rank's training device: its GPU (LOCAL_RANK) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def shard(items: list, d: Dist) -> list:
    return items[d.rank::d.world]


def announce(d: Dist) -> None:
    """One line per rank in the job log: where each rank ran (the SLURM tests read it)."""
    import socket
    import sys

    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    print(f"rank {d.rank}/{d.world} on node {node}", file=sys.stderr, flush=True)
