"""Next iteration's queries: drop a seeded fraction of the simple ones (all rollouts right)."""
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging, summary


@click.command()
@click.option("--data", required=True, help="queries of the GRPO stage just finished")
@click.option("--rollouts", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="curriculum section")
@click.option("--out", required=True)
@main_guard
def main(data, rollouts, cfg, out):
    setup_logging()
    from veripo.data.curriculum import next_queries
    from veripo.data.queries import load_queries
    from veripo.jsonio import read_jsonl, unique_index, write_jsonl

    records = load_queries(data, check_media=False)
    rows = read_jsonl(rollouts, required=("rollout_id", "query_id", "reward_accuracy"))
    unique_index(rows, "rollout_id", rollouts)
    kept, dropped = next_queries(records, rows, cfg["discard_fraction"], cfg["seed"], os.path.dirname(out) or ".")
    write_jsonl(out, kept)
    summary(out, f"kept {len(kept)} of {len(records)} queries; dropped {len(dropped)} simple: {dropped}")


if __name__ == "__main__":
    main()
