"""The dpo_build_pairs job: read an iteration's rollouts and verdicts, build and check the pairs, write
them with their statistics and the job's settings."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from veripo.jsonio import read_jsonl, require_token_ids, require_types, write_json, write_jsonl
from veripo.stage_config import PairsConfig, write_settings
from veripo.verify.pairs import build_all_pairs, is_chosen, join_verdicts
from veripo.verify.stats import pair_statistics


@dataclass(frozen=True)
class PairOutputs:
    """Where the dpo_build_pairs job writes."""

    pairs: str  # chosen/rejected pairs (JSONL)
    stats: str  # their statistics, read by the workflow's DPO gate (JSON)
    settings: str  # the job's effective settings (JSON)


def build_pairs_job(rollouts_path: str, verdicts_path: str, model_path: str, cfg: PairsConfig,
                    out: PairOutputs) -> dict:
    """The dpo_build_pairs job: pairs from the verified rollouts, their sides as token ids of
    ``model_path``'s tokenizer (a rollout's as sampled). Returns the statistics."""
    from veripo.model.text_tokenizer import load_text_tokenizer

    rows = read_jsonl(rollouts_path, required=("rollout_id", "query_id", "completion", "completion_ids", "query"))
    require_types(rows, {"completion": str, "query": dict}, rollouts_path)
    require_token_ids(rows, ["completion_ids"], rollouts_path, "the sampled token ids")
    verdicts = read_jsonl(verdicts_path, required=("rollout_id", "query_id", "checks", "clean"))
    groups = join_verdicts(rows, verdicts, rollouts_path, verdicts_path)
    tok = load_text_tokenizer(model_path)
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def count(think: str) -> int:
        return len(tok.encode(think, add_special_tokens=False))

    def tokenize(text: str) -> list[int]:
        # a constructed (reflection) completion is complete: it ends as a sampled one that stopped would
        return tok.encode(text, add_special_tokens=False) + [eos]

    pairs, dropped = build_all_pairs(groups, asdict(cfg), tokenize, count)
    write_jsonl(out.pairs, pairs)
    with_chosen = sum(any(is_chosen(v) for _, v in g) for g in groups.values())
    stats = pair_statistics(pairs, len(groups), with_chosen, dropped)
    write_json(out.stats, stats)
    write_settings(out.settings, cfg, {"rollouts": rollouts_path, "verdicts": verdicts_path, "model": model_path},
                   world_size=1)
    return stats
