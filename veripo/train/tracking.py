"""Live tracking of a training job: each metrics row, as it is made, to TensorBoard (and optionally W&B).

metrics.jsonl is written when a job ends, so a 48-hour GRPO job would show nothing until then. Every
training loop (warm-up, GRPO, DPO) hands each row to ``record``: the one place rows go. It keeps the row
for metrics.jsonl and passes it to the job's ``Tracker``, which writes it to a TensorBoard event file
under ``logs/tensorboard/<name>/`` (``<name>``: the rule and the job, ``grpo_train/iter1``), flushed
after every row so that ``tensorboard --logdir logs/tensorboard`` shows the job as it trains, and, with
``tracking.wandb.enabled``, to a W&B run of that name. A row's scalars are its numeric fields under their
own names; its step is its index in metrics.jsonl. Only rank 0 tracks.

Resuming: a job restored from a step checkpoint holding N rows goes on at step N. Its TensorBoard writer
opens with ``purge_step=N``: TensorBoard drops what the killed attempt logged from step N on, so the
steps it shows stay monotone and each appears once. A job that starts at step 0 removes the event files
of earlier attempts first (the folder is the job's log, replaced as its .log file is). W&B: each attempt
is a run of its own under the job's name, its steps starting where the attempt started.

These folders are logs, not rule outputs: no target depends on them, and none is needed to resume.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import ClassVar, Literal

from veripo.config import ConfigError
from veripo.stage_config import Section, doc

LOG_ROOT = "logs"  # relative to the job's working directory: the run directory, as for the rules' logs


@dataclass(frozen=True, kw_only=True)
class WandbConfig(Section):
    """Weights & Biases, beside TensorBoard."""

    SECTION: ClassVar[str] = "tracking.wandb"
    enabled: bool = doc("log every metrics row to a W&B run too (needs the wandb package in the job's env)")
    project: str = doc("the W&B project of the runs")
    mode: Literal["offline", "online"] = doc("offline: the runs stay under logs/wandb/ (`wandb sync` uploads "
                                             "them); online: streamed to the W&B server")


@dataclass(frozen=True, kw_only=True)
class TrackingConfig(Section):
    """Where a training job's metrics go while it runs (config ``tracking``)."""

    SECTION: ClassVar[str] = "tracking"
    tensorboard: bool = doc("write TensorBoard event files under logs/tensorboard/<rule>/<job>/")
    wandb: WandbConfig = doc("W&B logging (off unless enabled)")


def scalars(row: dict) -> dict[str, float]:
    """The row's numeric fields (a bool is not one), under their own names; text fields are left out."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """The live trackers of one job (``name``: ``<rule>/<job>``), on rank 0; elsewhere it does nothing.

    A missing package for an enabled tracker is a ConfigError when the tracker is made, before the job
    loads anything, naming the config key."""

    def __init__(self, cfg: TrackingConfig | None, name: str = "", rank: int | None = None, root: str = LOG_ROOT):
        if rank is None:
            rank = int(os.environ.get("RANK", "0") or 0)  # set by torchrun; what distributed.init reads too
        self.cfg = cfg if rank == 0 else None
        self.name = name
        self.tensorboard_dir = os.path.join(root, "tensorboard", name)
        self.wandb_dir = os.path.join(root, "wandb")
        self._writer = None
        self._run = None
        self._wandb = None
        if self.cfg is None:
            return
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError as exc:
                raise ConfigError(f"config key 'tracking.tensorboard' is true but TensorBoard cannot be imported "
                                  f"({exc}): install tensorboard (requirements.txt pins it) or set it false") from None
            self._summary_writer = SummaryWriter
        if self.cfg.wandb.enabled:
            try:
                import wandb
            except ImportError:
                raise ConfigError("config key 'tracking.wandb.enabled' is true but the wandb package is not "
                                  "installed in this job's environment: pip install wandb, or set it false") from None
            self._wandb = wandb

    @classmethod
    def of(cls, cfg: dict | None, name: str | None) -> Tracker:
        """The tracker a script's ``--tracking`` JSON (the config's tracking section) and job name ask for;
        no section: one that does nothing."""
        if cfg is None:
            return cls(None)
        if not name:
            raise ConfigError("tracking needs the job's name (--tracking-name <rule>/<job>)")
        return cls(TrackingConfig.from_config(cfg), name)

    def log(self, row: dict, step: int) -> None:
        """Send the row's ``scalars`` at ``step`` to every enabled tracker, flushed."""
        if self.cfg is None:
            return
        values = scalars(row)
        if self.cfg.tensorboard:
            if self._writer is None:
                self._writer = self._open_tensorboard(step)
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)
            # one small write per row: a viewer sees the step now, and a killed job loses nothing it logged
            self._writer.flush()
        if self._wandb is not None:
            if self._run is None:
                os.makedirs(self.wandb_dir, exist_ok=True)
                self._run = self._wandb.init(project=self.cfg.wandb.project, name=self.name,
                                             mode=self.cfg.wandb.mode, dir=self.wandb_dir)
            self._run.log(values, step=step)

    def _open_tensorboard(self, step: int):
        os.makedirs(self.tensorboard_dir, exist_ok=True)
        if step == 0:
            for old in glob.glob(os.path.join(self.tensorboard_dir, "events.out.tfevents.*")):
                os.remove(old)
            return self._summary_writer(self.tensorboard_dir)
        return self._summary_writer(self.tensorboard_dir, purge_step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._run is not None:
            self._run.finish()
            self._run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record(rows: list[dict], row: dict, tracker: Tracker | None) -> None:
    """Append ``row`` to the job's metrics ``rows`` (metrics.jsonl when the job ends) and track it live at
    its index there."""
    rows.append(row)
    if tracker is not None:
        tracker.log(row, len(rows) - 1)
