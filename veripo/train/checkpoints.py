"""What every training loop shares: frozen parts, step checkpoints, saving the model.

Step checkpoints live in a folder that is not a declared Snakemake output, so a killed or retried
job resumes from the newest complete one instead of restarting; a half-written one (still under its
temporary name, or without its COMPLETE marker) is ignored.

A step checkpoint carries the fingerprint of the run that wrote it (its inputs, the sha256 of every
video or image they name, and the settings that shape the trajectory) and a manifest with the sha256
of each of its files. A rerun whose fingerprint differs is refused rather than resumed: the usual
cause is data or settings changed by mistake, and starting over silently would discard hours of
training just as quietly as mixing would corrupt them.
A checkpoint whose files no longer match the manifest is set aside and the previous one is used.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import torch

from veripo import run_settings
from veripo.train import distributed
from veripo.errors import DiskFullError, InputError
from veripo.hashing import sha256_file, sha256_files_cached
from veripo.jsonio import atomic_path

log = logging.getLogger(__name__)

SHOWN = 5  # changed media files named in a refusal
_UNDECIDED = object()


def frozen_vision(model) -> None:
    model.model.visual.requires_grad_(False)


def save_checkpoint(engine, processor, out_dir: str | os.PathLike, extra: dict | None = None,
                    d: distributed.Dist | None = None) -> None:
    """Write the engine's model as a Hugging Face directory atomically (rank 0); it appears only once
    complete."""
    with engine.full_parameters():
        save_model(engine.module, processor, out_dir, extra, d)


def save_model(model, processor, out_dir: str | os.PathLike, extra: dict | None = None,
               d: distributed.Dist | None = None) -> None:
    """As save_checkpoint, for a whole model no engine holds (a stage that ends without training it):
    building an optimiser only to save would allocate its state for nothing."""
    if d is None or d.main:
        with disk_full_named(out_dir), atomic_path(out_dir) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            if extra is not None:
                (Path(tmp) / "veripo_stage.json").write_text(json.dumps(extra, indent=2) + "\n")
    distributed.barrier()


def input_identity(path: str) -> dict:
    """What a resumed job compares an input by.

    A file (queries, pairs) by the sha256 of its bytes: it is small, and when edited by hand a
    copy or a touch must not count as a change while an edit of the same size must. A model
    directory by each file's name, size and mtime: hashing the weights would read gigabytes at
    every job start, and what replaces a model here (an upstream rule rerun, a new download, a copy)
    writes new files with new mtimes. Anything else (a hub id) by its name."""
    p = Path(path)
    if p.is_file():
        return {"sha256": sha256_file(p)}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {"files": [[str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return {"name": str(path)}


def media_digests(paths: list[str], d: distributed.Dist) -> dict[str, str]:
    """{path: sha256} of the media a training file names (see hashing.sha256_files_cached): rank 0 hashes
    them, the other ranks receive its digests instead of reading every video again."""
    digests = sha256_files_cached(sorted(set(paths))) if d.main else None
    return distributed.gather(digests)[0]


def run_fingerprint(inputs: dict[str, str], settings: dict, media: dict[str, str] | None = None) -> dict:
    """The identity of a training run: ``inputs`` ({label: path}), ``settings`` (nested; flattened
    to dotted keys so a refusal can name the keys that changed) and ``media`` ({path: sha256} of the
    videos and images the inputs name, see media_digests): a video replaced under an unchanged
    training file changes what the rounds after a resume would see."""
    flat: dict = {}

    # Run settings (how often state is saved, where ranks meet, memory knobs) are not what is computed: a
    # rerun that changes them continues the same trajectory, so it may resume. The same list keeps them
    # out of the rules' params, so Snakemake does not rerun for them either.
    run_only = run_settings.not_in_result(settings)

    def walk(prefix: str, value) -> None:
        if prefix in run_only:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    walk("", settings)
    fingerprint = {"inputs": {label: {"path": str(path), "identity": input_identity(str(path))}
                              for label, path in inputs.items()},
                   "media": dict(sorted((media or {}).items())),
                   "settings": flat}
    return json.loads(json.dumps(fingerprint))  # as it reads back from disk: tuples are lists


def _differences(saved: dict, now: dict) -> list[str]:
    changed = []
    old_in, new_in = saved.get("inputs", {}), now["inputs"]
    for label in sorted(set(old_in) | set(new_in)):
        old, new = old_in.get(label), new_in.get(label)
        if old is None or new is None or old["identity"] != new["identity"]:
            changed.append(f"input {label} {(new or old)['path']}")
    old_m, new_m = saved.get("media", {}), now["media"]
    media = sorted(p for p in set(old_m) | set(new_m) if old_m.get(p) != new_m.get(p))
    if media:
        more = f" and {len(media) - SHOWN} more" if len(media) > SHOWN else ""
        changed.append("media " + ", ".join(media[:SHOWN]) + more)
    old_s, new_s = saved.get("settings", {}), now["settings"]
    keys = sorted(k for k in set(old_s) | set(new_s) if k not in old_s or k not in new_s or old_s[k] != new_s[k])
    if keys:
        changed.append("settings " + ", ".join(keys))
    return changed


# What torch.save and DeepSpeed's C++ writers raise when a write fails: the errno is lost on the way.
_STREAM_WRITE_FAILURES = ("basic_ios::clear", "file write failed", "No space left")


@contextlib.contextmanager
def disk_full_named(path: str | os.PathLike):
    """A write that runs out of disk inside the block becomes one DiskFullError naming ``path`` and the
    space left on its filesystem, instead of a traceback ending in "basic_ios::clear"."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise DiskFullError(_disk_full_message(path, "no space left on the device")) from None
    except RuntimeError as exc:
        if not any(marker in str(exc) for marker in _STREAM_WRITE_FAILURES):
            raise
        first = str(exc).strip().splitlines()[0]
        raise DiskFullError(_disk_full_message(path, f"the write failed ({first}); a full disk "
                                                                   f"is the usual cause")) from None


@contextlib.contextmanager
def _removed_on_error(tmp: Path, d: distributed.Dist):
    """A half-written step checkpoint is removed (rank 0): it would never be resumed, and on a full disk
    its bytes are the space the rerun needs."""
    try:
        yield
    except BaseException:
        if d.main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _disk_full_message(path: str | os.PathLike, what: str) -> str:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free on its filesystem"
    except OSError:
        free = "free space unknown"
    return (f"{path}: {what}, {free}; free space (or move the run) and rerun: it resumes from the last "
            f"complete step checkpoint")


class StepCheckpointer:
    """Periodic training state (engine: weights + optimiser; RNG per rank; loop position) under ``root``.

    ``fingerprint`` (see run_fingerprint) is recorded in every step checkpoint and must match to
    resume. ``journal`` names an append-only log the loop writes beside the checkpoints (GRPO's
    rollouts): each checkpoint records its length and digest, and a resume cuts it back to that
    length, so the log never holds rounds the restored state has not seen, nor another run's."""

    def __init__(self, root: str | os.PathLike, fingerprint: dict, journal: str | os.PathLike | None = None,
                 keep: int = 2):
        self.root = Path(root)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.journal = Path(journal) if journal is not None else None
        self.keep = keep
        self._chosen: Path | None | object = _UNDECIDED

    def completed(self) -> list[Path]:
        if not self.root.exists():
            return []
        done = [p for p in self.root.glob("step-*") if p.is_dir() and (p / "COMPLETE").exists()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def latest_round(self, d: distributed.Dist) -> int:
        latest = self.resume_point(d)
        return json.loads((latest / "loop.json").read_text())["round"] if latest else 0

    def resume_point(self, d: distributed.Dist) -> Path | None:
        """The newest intact step checkpoint of this run, or None to start over (decided once; every
        rank calls it). Refuses (InputError) a checkpoint written by another run, touching nothing."""
        if self._chosen is not _UNDECIDED:
            return self._chosen
        chosen, broken = None, []
        for step in reversed(self.completed()):
            problem = self._problem(step)
            if problem is not None:
                log.warning("step checkpoint %s is unusable: %s", step, problem)
                broken.append(step)
                continue
            changed = _differences(json.loads((step / "fingerprint.json").read_text()), self.fingerprint)
            if changed:
                raise InputError(step, f"written by another run ({'; '.join(changed)} changed): delete "
                                       f"{self.root} to start over, or rerun with what it was written with")
            chosen = step
            break
        if broken and chosen is not None:
            log.warning("resuming from the previous step checkpoint, %s", chosen)
        elif broken:
            log.warning("no intact step checkpoint left in %s: starting over", self.root)
        if chosen is not None and d.main:
            log.info("resuming from step checkpoint at round %d (%s): same %s",
                     json.loads((chosen / "loop.json").read_text())["round"], chosen, self._inputs_line())
        distributed.barrier()  # every rank has read the checkpoints before rank 0 moves any
        if d.main:
            for step in broken:
                # kept for a post-mortem under a name completed() ignores; clear() removes it with the rest
                aside = step.with_name(f"broken-{step.name}")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(step, aside)
            if self.journal is not None:
                self.root.mkdir(parents=True, exist_ok=True)
                mark = json.loads((chosen / "manifest.json").read_text())["journal"] if chosen else None
                self.journal.touch()
                os.truncate(self.journal, mark["bytes"] if mark else 0)
        distributed.barrier()
        self._chosen = chosen
        return chosen

    def _inputs_line(self) -> str:
        """What the resumed run was checked against, for its log line."""
        parts = [f"{label} {spec['path']}" for label, spec in self.fingerprint["inputs"].items()]
        if self.fingerprint.get("media"):
            parts.append(f"{len(self.fingerprint['media'])} media files (sha256)")
        return ", ".join(parts + ["settings"])

    def _problem(self, step: Path) -> str | None:
        """Why ``step`` cannot be trusted (naming the file), or None when every file matches the
        digest recorded at save."""
        try:
            manifest = json.loads((step / "manifest.json").read_text())
        except FileNotFoundError:
            return f"{step / 'manifest.json'} is missing"
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            return f"{step / 'manifest.json'} is not a manifest (cut short?)"
        on_disk = {str(f.relative_to(step)) for f in step.rglob("*") if f.is_file()} - {"manifest.json", "COMPLETE"}
        for rel in sorted(set(manifest["files"]) | on_disk):
            if rel not in on_disk:
                return f"{step / rel} is missing"
            if rel not in manifest["files"]:
                return f"{step / rel} was not written with the checkpoint"
            if sha256_file(step / rel) != manifest["files"][rel]:
                return f"{step / rel} does not match the sha256 recorded when it was saved (truncated or changed)"
        mark = manifest.get("journal")
        if self.journal is not None:
            if mark is None or not self.journal.is_file() or self.journal.stat().st_size < mark["bytes"] \
                    or sha256_file(self.journal, mark["bytes"]) != mark["sha256"]:
                return f"{self.journal} no longer starts with the rollouts logged up to this checkpoint"
        return None

    def save(self, engine, generator: torch.Generator, state: dict, d: distributed.Dist) -> Path:
        step = state["round"]
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".step-{step:06d}.tmp"
        with disk_full_named(tmp), _removed_on_error(tmp, d):
            self._write(engine, generator, state, d, tmp)
        distributed.barrier()
        if d.main:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.completed()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()
        return final

    def _write(self, engine, generator: torch.Generator, state: dict, d: distributed.Dist, tmp: Path) -> None:
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
            (tmp / "fingerprint.json").write_text(json.dumps(self.fingerprint, indent=1))
            files = {str(f.relative_to(tmp)): sha256_file(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
            journal = None
            if self.journal is not None:
                size = self.journal.stat().st_size
                journal = {"bytes": size, "sha256": sha256_file(self.journal, size)}
            (tmp / "manifest.json").write_text(json.dumps({"files": files, "journal": journal}, indent=1))
            (tmp / "COMPLETE").write_text("")

    def restore(self, engine, generator: torch.Generator, state: dict, d: distributed.Dist) -> dict:
        latest = self.resume_point(d)
        if latest is None:
            return state
        # weights_only: a file planted here must not run code on resume. DeepSpeed's own loader
        # unpickles in full (weights_only=False), so for its files the manifest check above is the guard.
        rng_file = latest / f"rng-rank{d.rank}.pt"
        try:
            rng = torch.load(rng_file, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise self._unsafe(rng_file, exc) from None
        try:
            engine.load_state(latest)
        except pickle.UnpicklingError as exc:
            raise self._unsafe(latest, exc) from None
        generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch_rng"])
        return json.loads((latest / "loop.json").read_text())

    def _unsafe(self, path: Path, exc: Exception) -> InputError:
        return InputError(path, f"refused to load: holds more than tensors ({str(exc).splitlines()[0]}); "
                                f"delete {self.root} to start over")

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
