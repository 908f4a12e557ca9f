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
    from transformers import AutoTokenizer

    from veripo.jsonio import read_jsonl, require_types, write_json, write_jsonl
    from veripo.verify.pairs import build_all_pairs, is_chosen, join_verdicts
    from veripo.train.rollouts import check_completion_ids
    from veripo.verify.stats import pair_statistics

    rows = read_jsonl(rollouts, required=("rollout_id", "query_id", "completion", "completion_ids", "query"))
    require_types(rows, {"completion": str, "query": dict}, rollouts)
    check_completion_ids(rows, rollouts)
    groups = join_verdicts(rows, read_jsonl(verdicts, required=("rollout_id", "query_id", "checks", "clean")),
                           rollouts, verdicts)
    tok = AutoTokenizer.from_pretrained(model_path)
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def count(think: str) -> int:
        return len(tok(think, add_special_tokens=False)["input_ids"])

    def tokenize(text: str) -> list[int]:
        # a constructed (reflection) completion is complete: it ends as a sampled one that stopped would
        return tok(text, add_special_tokens=False)["input_ids"] + [eos]

    pairs, dropped = build_all_pairs(groups, cfg, tokenize, count)
    write_jsonl(out, pairs)
    with_chosen = sum(any(is_chosen(v) for _, v in g) for g in groups.values())
    stats = pair_statistics(pairs, len(groups), with_chosen, dropped)
    write_json(stats_out, stats)
    click.echo(f"{len(pairs)} pairs from {len(groups)} queries ({with_chosen} with a chosen rollout): "
               f"{stats['by_kind']}; dropped {stats['dropped']}", err=True)


if __name__ == "__main__":
    main()
