"""Every engine takes the same step: plain torch AdamW, DeepSpeed ZeRO-1/2/3, one rank or two (gloo).

Driven as veripo.train.grpo/dpo drive them: uneven micro-batches, the ranks padded with a weight-0
micro-batch, gradient clipping active. Gradient norms agree within 1e-5 relative and weights within
1e-6, for one step and a 5-step AdamW trajectory, and a ZeRO-3 state saved at step 2 and loaded into
a fresh engine continues it. Before the fix, ZeRO-3 kept only each step's last micro-batch (here the
padding one: grad norm 0 at every step). Then the same on a real GRPO round and a real DPO stage of
the tiny model, compared through the checkpoints the jobs save (gathered under ZeRO-3): gradient
norms within 1e-5, weights as ``_same_weights`` says."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from veripo.train import distributed
from veripo.train.distributed import free_port
from veripo.train.engine import TrainEngine

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ROOT / "tests" / "workers"
NORM_RTOL, WEIGHT_ATOL = 1e-5, 1e-6


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")


def _run(script: Path, args: list[str], world: int, cwd: Path | None = None) -> None:
    launch = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                  f"--nproc_per_node={world}", f"--master_port={free_port()}"]
    proc = subprocess.run([*launch, str(script), *args], env=_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _close_norms(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= NORM_RTOL * max(abs(y), 1e-12) for x, y in zip(a, b))


def _max_diff(a: list[float], b: list[float]) -> float:
    return float((torch.tensor(a) - torch.tensor(b)).abs().max())


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("engines")
    _run(WORKERS / "engine_equivalence.py", [str(out / "w1.json"), "torch", "zero1", "zero2", "zero3"], 1)
    _run(WORKERS / "engine_equivalence.py", [str(out / "w2.json"), "zero1", "zero2", "zero3"], 2)
    return {w: json.loads((out / f"w{w}.json").read_text()) for w in (1, 2)}


@pytest.mark.parametrize("world,kind", [(1, "zero1"), (1, "zero2"), (1, "zero3"),
                                        (2, "zero1"), (2, "zero2"), (2, "zero3")])
def test_zero_takes_the_torch_step(toy_runs, world, kind):
    ref = toy_runs[1]["engines"]["torch"]
    got = toy_runs[world]["engines"][kind]
    assert toy_runs[world]["world"] == world and got["zero_stage"] == int(kind[-1])
    # clipping is active at every step (norms above grad_clip 1.0), so the clip is compared too
    assert min(ref["grad_norms"]) > 1.0
    assert _close_norms(got["grad_norms"], ref["grad_norms"]), (got["grad_norms"], ref["grad_norms"])
    for step in ("1", "5"):
        assert _max_diff(got["weights"][step], ref["weights"][step]) <= WEIGHT_ATOL
    assert _max_diff(ref["weights"]["1"], ref["weights"]["5"]) > 1e-2  # the trajectory goes somewhere


@pytest.mark.parametrize("world,kind", [(1, "torch"), (1, "zero3"), (2, "zero2"), (2, "zero3")])
def test_saved_state_resumes_the_trajectory(toy_runs, world, kind):
    got = toy_runs[world]["engines"][kind]
    # the fresh engine held the initial weights until it loaded the step-2 state
    assert _max_diff(got["loaded"], got["weights"]["2"]) == 0.0
    assert _max_diff(got["resumed"], got["weights"]["5"]) <= WEIGHT_ATOL


def test_backward_needs_the_engine_forward():
    torch.manual_seed(0)
    engine = TrainEngine(torch.nn.Linear(3, 1), 1e-2, 0.0, 1.0, "torch")
    x = torch.randn(2, 3)
    engine.backward(engine.forward(x).sum())
    with pytest.raises(RuntimeError, match="without a TrainEngine.forward"):
        engine.backward(engine.module(x).sum())  # the bare module: DeepSpeed would not count it


def test_torch_engine_refuses_several_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    with pytest.raises(ValueError, match="one process"):
        TrainEngine(torch.nn.Linear(3, 1), 1e-2, 0.0, 1.0, "torch")


# --- the tiny model: a real GRPO round and a real DPO stage -----------------------------------------------

@pytest.fixture(scope="module")
def tiny_runs(finished_run, tmp_path_factory, templates, media) -> dict:
    out = tmp_path_factory.mktemp("engines_tiny")
    (out / "setup.json").write_text(json.dumps({"templates": templates, "media": media}))
    runs = {}
    for world, engines in ((1, ["torch", "zero2", "zero3"]), (2, ["zero2", "zero3"])):
        dest = out / f"w{world}"
        _run(WORKERS / "engine_equivalence_real.py",
             ["iter1/grpo/model", "data/train_video.jsonl", "iter1/dpo/pairs.jsonl", str(out / "setup.json"),
              str(dest), *engines], world, cwd=finished_run)
        runs[world] = (dest, json.loads((dest / "result.json").read_text()))
    return runs


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _weight_gap(a: Path, b: Path, quantile: float | None = None) -> float:
    """The largest element-wise difference of two checkpoints (or the given quantile of them)."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    gaps = torch.cat([(wa[k].float() - wb[k].float()).abs().reshape(-1) for k in wa])
    return float(gaps.max() if quantile is None else gaps.quantile(quantile))


def _same_weights(got: Path, ref: Path, start: Path) -> None:
    """``got`` took ``ref``'s steps from ``start``. AdamW divides each gradient element by its own
    running scale, so an element whose gradient is a near-cancelling sum turns fp32 rounding into a
    visible change of its update (2 of the tiny model's 231,648 elements differ by 2.6e-6 after two
    steps): all but 1 in 10,000 elements within 1e-6, and none off by 5% of the largest move. A lost
    micro-batch flips the update's sign on whole tensors: gaps of the move's own size."""
    move = _weight_gap(ref, start)
    assert move > 50 * WEIGHT_ATOL  # the steps moved the weights by far more than the engines may differ
    assert _weight_gap(got, ref, 0.9999) <= WEIGHT_ATOL
    assert _weight_gap(got, ref) <= 0.05 * move


@pytest.mark.slow
def test_tiny_grpo_round_same_on_every_engine(tiny_runs, finished_run):
    start = finished_run / "iter1/grpo/model"
    for world, kinds in ((1, ("zero2", "zero3")), (2, ("zero3",))):
        dest, res = tiny_runs[world]
        ref_kind = "torch" if world == 1 else "zero2"
        ref = res[f"{ref_kind}-grpo"]
        # a round worth comparing: several micro-batches, and rollouts with an advantage to follow
        assert len(ref["grad_norms"]) == 2 and max(ref["micro_batches"]) >= 2
        assert min(ref["grad_norms"]) > 0 and any(abs(a) > 0.1 for a in ref["advantages"])
        for kind in kinds:
            got = res[f"{kind}-grpo"]
            assert got["rollouts"] == ref["rollouts"]  # the same weights sampled the same tokens
            assert _close_norms(got["grad_norms"], ref["grad_norms"]), (world, kind, got["grad_norms"], ref["grad_norms"])
            _same_weights(dest / f"{kind}-grpo", dest / f"{ref_kind}-grpo", start)


@pytest.mark.slow
def test_tiny_dpo_stage_same_on_every_engine_and_world(tiny_runs, finished_run):
    dest1, res1 = tiny_runs[1]
    ref = res1["torch-dpo"]
    # 7 pairs in steps of 4: two ranks get 2 + 2, then 2 + 1 and a padding forward
    assert ref["pairs"] == [4, 3] and min(ref["grad_norms"]) > 0
    for world, kind in ((1, "zero2"), (1, "zero3"), (2, "zero2"), (2, "zero3")):
        dest, res = tiny_runs[world]
        got = res[f"{kind}-dpo"]
        assert got["pairs"] == ref["pairs"]
        assert _close_norms(got["grad_norms"], ref["grad_norms"]), (world, kind, got["grad_norms"], ref["grad_norms"])
        _same_weights(dest / f"{kind}-dpo", dest1 / "torch-dpo", finished_run / "iter1/grpo/model")
