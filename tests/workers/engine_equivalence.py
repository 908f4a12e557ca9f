"""One process of tests/test_engine_equivalence.py (alone, or one of a torchrun's ranks).

    engine_equivalence.py OUT_JSON ENGINES...      (ENGINES: torch, zero1, zero2, zero3)

Trains the same 3-layer net, from the same initial weights, on the same data, with each engine in
turn, the way veripo.train.grpo/dpo do: every step's sequences split across the ranks, cut into
micro-batches of uneven size, the ranks padded to the same number of micro-batches with a weight-0
one, each sequence weighted world / (sequences in the step), ``TrainEngine.forward`` / ``backward``
per micro-batch and one ``step``. Gradient clipping is on and active (the norms are well above it).
Per engine it records each step's gradient norm and the full weights after step 1 and step 5, then
the same 5 steps resumed from a step-2 ``save_state`` into a fresh engine. Rank 0 writes OUT_JSON.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from veripo.train import distributed
from veripo.train.engine import TrainEngine

STEPS, PER_STEP, MICRO, LR, WEIGHT_DECAY, CLIP = 5, 7, 3, 0.05, 0.01, 1.0
ROOT = Path(__file__).resolve().parents[2]


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 4))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, PER_STEP, 8, generator=g)
    return x, 3 * torch.randn(STEPS, PER_STEP, 4, generator=g)


def zero_config(stage: int, tmp: str) -> str:
    cfg = json.loads((ROOT / "configs" / "deepspeed" / "zero3.json").read_text())
    # every parameter partitioned under ZeRO-3 (the net's are all below the default threshold)
    cfg["zero_optimization"].update(stage=stage, stage3_param_persistence_threshold=0)
    path = os.path.join(tmp, f"zero{stage}-rank{torch.distributed.get_rank()}.json")  # ranks share tmp
    Path(path).write_text(json.dumps(cfg))
    return path


def make_engine(kind: str, tmp: str) -> TrainEngine:
    if kind == "torch":
        return TrainEngine(make_net(), LR, WEIGHT_DECAY, CLIP, "torch")
    return TrainEngine(make_net(), LR, WEIGHT_DECAY, CLIP, "deepspeed", zero_config(int(kind[-1]), tmp))


def train_step(engine: TrainEngine, x: torch.Tensor, y: torch.Tensor, d: distributed.Dist) -> float:
    """One optimiser step over one step's sequences, split and padded as the loops do."""
    mine = list(range(PER_STEP))[d.rank::d.world]
    batches = [mine[i:i + MICRO] for i in range(0, len(mine), MICRO)]
    # the ranks' micro-batch counts differ (7 sequences: 3 + 1 on rank 0, 3 on rank 1); one more at
    # weight 0 everywhere, so that at any world size some rank ends its step on a padding batch
    counts = distributed.gather(len(batches))
    n_batches = max(counts) + 1
    weight = d.world / PER_STEP
    dev = distributed.device()
    for b in range(n_batches):
        if b < len(batches):
            rows = torch.tensor(batches[b])
            out = engine.forward(x[rows].to(dev))
            loss = ((out - y[rows].to(dev)) ** 2).mean(1).sum() * weight
        else:
            loss = engine.forward(x[:1].to(dev)).sum() * 0
        engine.backward(loss)
    return engine.step()


def weights(engine: TrainEngine) -> list[float]:
    with engine.full_parameters():
        return torch.cat([p.detach().float().reshape(-1).cpu() for p in engine.module.parameters()]).tolist()


def run(kind: str, d: distributed.Dist, tmp: str) -> dict:
    x, y = data()
    engine = make_engine(kind, tmp)
    norms, after = [], {}
    for s in range(STEPS):
        norms.append(train_step(engine, x[s], y[s], d))
        if s + 1 in (1, 2, STEPS):
            after[s + 1] = weights(engine)
        if s + 1 == 2:
            ckpt = Path(tmp) / f"ckpt-{kind}"
            if d.main:
                ckpt.mkdir()
            distributed.barrier()
            engine.save_state(ckpt)
    # resumed: a fresh engine (fresh initial weights) loads the step-2 state and continues
    resumed = make_engine(kind, tmp)
    resumed.load_state(ckpt)
    loaded = weights(resumed)
    for s in range(2, STEPS):
        train_step(resumed, x[s], y[s], d)
    return {"grad_norms": norms, "weights": {str(k): v for k, v in after.items()}, "loaded": loaded,
            "resumed": weights(resumed), "zero_stage": engine.zero_stage}


def main() -> None:
    out, engines = sys.argv[1], sys.argv[2:]
    d = distributed.init("deepspeed")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        # one folder for every rank (the checkpoints): rank 0's
        tmp = distributed.gather(tmp)[0]
        results = {kind: run(kind, d, tmp) for kind in engines}
        distributed.barrier()
    if d.main:
        Path(out).write_text(json.dumps({"world": d.world, "engines": results}))


if __name__ == "__main__":
    main()
