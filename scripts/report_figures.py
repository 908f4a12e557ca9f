"""The report's figures (matplotlib PNGs) of a run, from its artifacts as the manifest names them."""
from pathlib import Path

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--manifest", type=JSON, required=True, help="artifacts by kind (veripo.report.plan.manifest)")
@click.option("--benchmarks-dir", required=True, help="Snakemake's benchmark files: <dir>/<rule>/<job>.tsv")
@click.option("--verifier", type=JSON, required=True,
              help="the config's verifier section: what the GRPO rollouts are verified with")
@click.argument("outputs", nargs=-1, required=True)
@main_guard
def main(manifest, benchmarks_dir, verifier, outputs):
    """Write each of OUTPUTS, figures/<name>.png, <name> one of veripo.report.plan's figures."""
    setup_logging()
    from veripo.report.collect import collect
    from veripo.report.figures import draw_all

    tables = collect(manifest, benchmarks_dir, verifier)
    draw_all(tables, {Path(p).stem: p for p in outputs})
    click.echo(f"wrote {len(outputs)} figures", err=True)


if __name__ == "__main__":
    main()
