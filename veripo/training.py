"""What every training loop shares: frozen parts, step checkpoints, saving the model.

Step checkpoints live in a folder that is not a declared Snakemake output, so a killed or retried
job resumes from the newest complete one instead of restarting; a half-written one (still under its
temporary name, or without its COMPLETE marker) is ignored.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from veripo import distributed
from veripo.jsonio import atomic_path


def frozen_vision(model) -> None:
    model.model.visual.requires_grad_(False)


def save_checkpoint(engine, processor, out_dir: str | os.PathLike, extra: dict | None = None,
                    d: distributed.Dist | None = None) -> None:
    """Write a Hugging Face directory atomically (rank 0); it appears only once complete."""
    with engine.full_parameters():
        if d is None or d.main:
            with atomic_path(out_dir) as tmp:
                engine.module.save_pretrained(tmp)
                processor.save_pretrained(tmp)
                if extra is not None:
                    (Path(tmp) / "veripo_stage.json").write_text(json.dumps(extra, indent=2) + "\n")
    distributed.barrier()


class StepCheckpointer:
    """Periodic training state (engine: weights + optimiser; RNG per rank; loop position) under ``root``."""

    def __init__(self, root: str | os.PathLike, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def completed(self) -> list[Path]:
        if not self.root.exists():
            return []
        done = [p for p in self.root.glob("step-*") if p.is_dir() and (p / "COMPLETE").exists()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def latest_round(self) -> int:
        done = self.completed()
        return json.loads((done[-1] / "loop.json").read_text())["round"] if done else 0

    def save(self, engine, generator: torch.Generator, state: dict, d: distributed.Dist) -> Path:
        step = state["round"]
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".step-{step:06d}.tmp"
        if d.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        distributed.barrier()
        engine.save_state(tmp)
        torch.save({"generator": generator.get_state(), "torch_rng": torch.get_rng_state()},
                   tmp / f"rng-rank{d.rank}.pt")
        distributed.barrier()
        if d.main:
            (tmp / "loop.json").write_text(json.dumps(state))
            (tmp / "COMPLETE").write_text("")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.completed()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()
        return final

    def restore(self, engine, generator: torch.Generator, state: dict, d: distributed.Dist) -> dict:
        done = self.completed()
        if not done:
            return state
        latest = done[-1]
        engine.load_state(latest)
        rng = torch.load(latest / f"rng-rank{d.rank}.pt", weights_only=False)
        generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch_rng"])
        return json.loads((latest / "loop.json").read_text())

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
