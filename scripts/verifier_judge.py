"""Verdicts for every rollout of a GRPO stage, plus per-iteration statistics."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, progress, setup_logging


@click.command()
@click.option("--rollouts", required=True)
@click.option("--model", "model_path", required=True, help="policy checkpoint (its tokenizer counts think tokens)")
@click.option("--config", "cfg", type=JSON, required=True, help="verifier section")
@click.option("--out", required=True)
@click.option("--stats", "stats_out", required=True)
@main_guard
def main(rollouts, model_path, cfg, out, stats_out):
    setup_logging()
    import logging

    from transformers import AutoTokenizer

    from veripo.verify import verifier
    from veripo.jsonio import read_jsonl, require_types, unique_index, write_json, write_jsonl
    from veripo.verify.stats import verdict_statistics

    rows = read_jsonl(rollouts, required=("rollout_id", "query_id", "completion", "query", "iteration"))
    unique_index(rows, "rollout_id", rollouts)
    require_types(rows, {"completion": str, "query": dict}, rollouts)
    tok = AutoTokenizer.from_pretrained(model_path)
    judge = verifier.get_judge(cfg["judge"])
    logging.getLogger("verifier").info("judge %s on %d rollouts", judge.name, len(rows))
    verdicts = verifier.verify_all(rows, tok, verifier.VerifierConfig.from_config(cfg), judge, progress=progress)
    write_jsonl(out, verdicts)
    stats = verdict_statistics(verdicts)
    write_json(stats_out, stats)
    click.echo(f"{stats['rollouts']} rollouts, {stats['clean']} clean, judge {stats['checks']['consistency']}, "
               f"inconsistency rate {100 * stats['inconsistency_rate']:.1f}%", err=True)


if __name__ == "__main__":
    main()
