"""Next iteration's queries: drop a seeded fraction of the simple ones (all rollouts right)."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--data", required=True, help="queries of the GRPO stage just finished")
@click.option("--rollouts", required=True)
@click.option("--config", "cfg", type=JSON, required=True, help="curriculum section")
@click.option("--out", required=True)
@main_guard
def main(data, rollouts, cfg, out):
    setup_logging()
    import os

    from veripo.data.curriculum import discard_simple
    from veripo.jsonio import read_jsonl, unique_index, write_jsonl
    from veripo.data.queries import load_queries

    records = load_queries(data, check_media=False)
    rows = read_jsonl(rollouts, required=("rollout_id", "query_id", "reward_accuracy"))
    unique_index(rows, "rollout_id", rollouts)
    kept, dropped = discard_simple(records, rows, cfg["discard_fraction"], cfg["seed"])
    # media paths were resolved against the run directory; rewrite them relative to the new file
    out_dir = os.path.dirname(out) or "."
    for r in kept:
        for key in ("video", "image"):
            if r.get(key) and not os.path.isabs(r[key]):
                r[key] = os.path.relpath(r[key], out_dir)
    write_jsonl(out, kept)
    click.echo(f"kept {len(kept)} of {len(records)} queries; dropped {len(dropped)} simple: {dropped}", err=True)


if __name__ == "__main__":
    main()
