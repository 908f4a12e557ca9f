"""One benchmark's generation job: screen the media, pick the backend, resume or start the partial
predictions, generate, then put the predictions and their run info (what generated them) in place."""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Callable

from veripo.eval.backends import hf as eval_backends

from veripo.eval import predictions as evaluate
from veripo import run_settings

from veripo.media import checks as media_check
from veripo.eval.benchmarks import load_benchmark
from veripo.hashing import sha256_file, sha256_files_cached
from veripo.jsonio import write_json
from veripo.stage_config import EvalJob

log = logging.getLogger(__name__)
SAMPLING = ("temperature", "top_p", "repetition_penalty", "max_new_tokens")


def run_generation(model_path: str, benchmark: str, questions: str, video_root: str, job: EvalJob, out: str,
                   run_info: str, progress: Callable | None = None) -> dict:
    """Write ``out`` (one prediction per answerable question) and ``run_info``; returns the run info.

    ``job`` is the benchmark's EvalJob (``EvalJob.of(config, benchmark)``); the run info holds all of
    its fields. Missing or unreadable media stop the job before any generation unless
    ``job.skip_missing_videos``."""
    settings = asdict(job)  # the backends read the settings as a mapping
    qs = load_benchmark(benchmark, questions)
    todo, problems = media_check.screen_questions(qs, video_root, questions, benchmark,
                                                  job.skip_missing_videos, settings["media"])
    skipped: dict[str, dict] = {}
    for p in problems:
        skipped.setdefault(p.key, {"key": p.key, "path": p.path, "reason": p.reason})
    if skipped:
        log.warning("skipping %d of %d questions (missing or unreadable media), first: %s", len(skipped), len(qs),
                    ", ".join(list(skipped)[:5]))
    gen = settings["generation"]
    backend_name = eval_backends.resolve_backend(gen["backend"])
    partial = evaluate.partial_path(out)
    os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
    # the questions and their media by content: what was answered must be what is asked now
    media = sha256_files_cached([os.path.join(video_root, q["video_path"]) for q in todo])
    # less the run settings (the frame cache: veripo/run_settings.py), which change no prediction
    fingerprint, _ = run_settings.split({
        "checkpoint": model_path, "weights": evaluate.file_stamp(model_path), "questions": questions,
        "question_file": sha256_file(questions), "media_files": media, "video_root": video_root,
        "media": settings["media"], "prompts": settings["prompts"], "dtype": settings["dtype"],
        "backend": backend_name, **{k: gen[k] for k in SAMPLING}})
    if evaluate.resume_or_reset(partial, fingerprint):
        log.info("resuming %s: same checkpoint, question file and %d media files (sha256), settings", partial,
                 len(media))
    described = {"backend": backend_name}
    generated = 0
    if not {q["key"] for q in todo} <= evaluate.done_keys(partial):
        backend = eval_backends.load_backend(backend_name, model_path, settings, video_root)
        described = backend.describe()
        generated = evaluate.generate_predictions(backend, todo, partial, gen["batch_size"], progress=progress)
    log.info("generated %d, resumed past %d, skipped %d", generated, len(todo) - generated, len(skipped))
    generation = {k: gen[k] for k in (*SAMPLING, "batch_size")}
    generation.update(described, configured_backend=gen["backend"])
    info = {"benchmark": benchmark, "questions": questions, "questions_sha256": sha256_file(questions),
            "video_root": video_root, "n_questions": len(qs), "n_answered": len(todo), "skipped": len(skipped),
            "skipped_questions": list(skipped.values()), "generation": generation, "media": settings["media"],
            "model": model_path, "settings": settings}
    write_json(run_info, info)
    os.replace(partial, out)
    os.remove(evaluate.meta_path(partial))
    return info
