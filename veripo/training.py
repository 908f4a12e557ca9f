"""What every training loop shares: the optimiser, frozen parts, step checkpoints, saving the model.

Step checkpoints live in a folder that is not a declared Snakemake output, so a killed or retried
job resumes from the newest complete one instead of restarting; a half-written one (no COMPLETE
marker, or still under its temporary name) is ignored.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from veripo.jsonio import atomic_path


def build_optimizer(model, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def frozen_vision(model) -> None:
    model.model.visual.requires_grad_(False)


def save_checkpoint(model, processor, out_dir: str | os.PathLike, extra: dict | None = None) -> None:
    """Write a Hugging Face directory atomically: it appears only once complete."""
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if extra is not None:
            (Path(tmp) / "veripo_stage.json").write_text(json.dumps(extra, indent=2) + "\n")


class StepCheckpointer:
    """Periodic training state (weights, optimiser, RNG, loop position) under ``root``."""

    def __init__(self, root: str | os.PathLike, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def completed(self) -> list[Path]:
        if not self.root.exists():
            return []
        done = [p for p in self.root.glob("step-*") if p.is_dir() and (p / "COMPLETE").exists()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def save(self, model, optimizer, generator: torch.Generator, state: dict) -> Path:
        step = state["round"]
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".step-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
        (tmp / "loop.json").write_text(json.dumps(state))
        (tmp / "COMPLETE").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in self.completed()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, model, optimizer, generator: torch.Generator, state: dict) -> dict:
        done = self.completed()
        if not done:
            return state
        latest = done[-1]
        blob = torch.load(latest / "state.pt", weights_only=False)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        generator.set_state(blob["generator"])
        torch.set_rng_state(blob["torch_rng"])
        return json.loads((latest / "loop.json").read_text())

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
