"""Sampling seeds: one pure function of the run's seed and of where the sampling happens.

Every sampler of the loop (GRPO rollouts on HF or vLLM, the verifier's fresh pass) is seeded with
``sampling_seed(seed, stage, iteration, ...)``. Stage and iteration are part of it so that iteration 2
does not replay iteration 1's sampling noise (same config seed, same rank, same round index), and the
fresh pass does not replay the GRPO stage's. The trailing parts say where within the stage: the rank
of an HF sampler (one generator per rank, whose state the step checkpoints keep), or the round and the
query of a vLLM request (a seed per request, so a resumed round samples what the first try sampled,
however the round's queries are batched).

Standard library only.
"""
from __future__ import annotations

import hashlib


def sampling_seed(seed: int, stage: str, iteration: int | None, *where: object) -> int:
    """A seed in [0, 2**32) from the config's ``seed``, the ``stage`` (activation, video, fresh, ...),
    the workflow ``iteration`` and ``where`` in the stage (rank, or round and query id). Equal parts
    give an equal seed in every process and Python version (sha256 of their repr, not ``hash``); 32
    bits because vLLM's engine seed also seeds numpy."""
    parts = (int(seed), str(stage), iteration, *where)
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")
