"""The DPO gate: whether an iteration's DPO stage trains, given how many pairs its verifier yielded.

Imports nothing beyond the standard library: the Snakefile calls it while the DAG is built, where
the ML stack (torch, numpy) must not be needed (``snakemake --lint`` runs with snakemake alone).
"""
from __future__ import annotations


def dpo_gate(iteration: int, n_pairs: int, min_pairs: int, on_too_few: str) -> dict:
    """Whether iteration ``iteration``'s DPO stage trains: ``train``, or with fewer than ``min_pairs``
    pairs ``stop`` or ``skip`` (config ``dpo.on_too_few_pairs``, one of the two by the schema), with the
    message saying why."""
    if n_pairs >= min_pairs:
        return {"decision": "train", "message": f"iteration {iteration}: {n_pairs} pairs, DPO trains on them"}
    head = (f"iteration {iteration} yielded {n_pairs} DPO pairs, fewer than dpo.min_pairs = {min_pairs} "
            f"(see iter{iteration}/dpo/pair_stats.json)")
    if on_too_few == "stop":
        return {"decision": "stop", "message": f"{head}; stopping as dpo.on_too_few_pairs is 'stop'. Lower "
                                               f"dpo.min_pairs, set dpo.on_too_few_pairs: skip, or get more rollouts."}
    return {"decision": "skip", "message": f"{head}; DPO of iteration {iteration} is skipped "
                                           f"(dpo.on_too_few_pairs: skip): iter{iteration}/dpo/model is its GRPO model."}
