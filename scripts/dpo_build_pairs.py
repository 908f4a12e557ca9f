"""Chosen/rejected pairs from the verified rollouts of one iteration, and their statistics."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--rollouts", required=True)
@click.option("--verdicts", required=True)
@click.option("--model", "model_path", required=True, help="policy checkpoint (its tokenizer counts think tokens)")
@click.option("--config", "cfg", type=JSON, required=True, help="pairs section")
@click.option("--out", required=True)
@click.option("--stats", "stats_out", required=True)
@main_guard
def main(rollouts, verdicts, model_path, cfg, out, stats_out):
    setup_logging()
    from collections import defaultdict

    from transformers import AutoTokenizer

    from veripo.errors import InputError
    from veripo.jsonio import read_jsonl, write_json, write_jsonl
    from veripo.pairs import build_pairs, is_chosen
    from veripo.verifier_stats import pair_statistics

    rows = {r["rollout_id"]: r for r in read_jsonl(rollouts, required=("rollout_id", "query_id", "completion"))}
    groups = defaultdict(list)
    for v in read_jsonl(verdicts, required=("rollout_id", "query_id", "checks", "clean")):
        if v["rollout_id"] not in rows:
            raise InputError(verdicts, f"verdict for unknown rollout {v['rollout_id']!r}", line=v["_line"],
                             field="rollout_id")
        groups[v["query_id"]].append((rows[v["rollout_id"]], v))
    tok = AutoTokenizer.from_pretrained(model_path)

    def count(think: str) -> int:
        return len(tok(think, add_special_tokens=False)["input_ids"])

    pairs = [p for q in sorted(groups)
             for p in build_pairs(groups[q], cfg["kinds"], cfg["max_per_query"], cfg.get("reflection_cue"), count,
                                   cfg["rotate_kinds"])]
    write_jsonl(out, pairs)
    with_chosen = sum(any(is_chosen(v) for _, v in g) for g in groups.values())
    stats = pair_statistics(pairs, len(groups), with_chosen)
    write_json(stats_out, stats)
    click.echo(f"{len(pairs)} pairs from {len(groups)} queries ({with_chosen} with a chosen rollout): "
               f"{stats['by_kind']}", err=True)


if __name__ == "__main__":
    main()
