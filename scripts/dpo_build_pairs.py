"""Chosen/rejected pairs from the verified rollouts of one iteration."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--rollouts", required=True)
@click.option("--verdicts", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="pairs section")
@click.option("--out", required=True)
@click.option("--stats", "stats_out", required=True)
@main_guard
def main(rollouts, verdicts, cfg, out, stats_out):
    setup_logging()
    from collections import Counter, defaultdict

    from veripo.errors import InputError
    from veripo.jsonio import read_jsonl, write_json, write_jsonl
    from veripo.pairs import build_pairs
    from veripo.verifier_stats import pair_statistics

    rows = {r["rollout_id"]: r for r in read_jsonl(rollouts, required=("rollout_id", "query_id", "completion"))}
    groups = defaultdict(list)
    for v in read_jsonl(verdicts, required=("rollout_id", "query_id", "checks", "clean")):
        if v["rollout_id"] not in rows:
            raise InputError(verdicts, f"verdict for unknown rollout {v['rollout_id']!r}", line=v["_line"],
                             field="rollout_id")
        groups[v["query_id"]].append((rows[v["rollout_id"]], v))
    pairs = [p for q in sorted(groups) for p in build_pairs(groups[q], cfg["kinds"], cfg["max_per_query"])]
    write_jsonl(out, pairs)
    write_json(stats_out, pair_statistics(pairs, len(groups)))
    click.echo(f"{len(pairs)} pairs from {len(groups)} queries: {dict(Counter(p['kind'] for p in pairs))}", err=True)


if __name__ == "__main__":
    main()
