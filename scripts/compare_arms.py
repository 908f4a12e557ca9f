"""The arms' comparison (rule compare): summary JSON, its markdown table and the figures."""
from pathlib import Path

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--manifest", type=JSON, required=True, help="what to read (veripo.arms.compare_manifest)")
@click.option("--summary", "summary_out", required=True, help="the comparison as JSON")
@click.option("--table", required=True, help="the comparison as markdown tables")
@click.argument("figures", nargs=-1, required=True)
@main_guard
def main(manifest, summary_out, table, figures):
    """Write the comparison and each of FIGURES, figures/compare/<name>.png."""
    setup_logging()
    from veripo.jsonio import atomic_path, write_json
    from veripo.report.compare import markdown, summarise
    from veripo.report.compare_figures import draw_all

    summary = summarise(manifest)
    write_json(summary_out, summary)
    with atomic_path(table) as tmp:
        Path(tmp).write_text(markdown(summary))
    draw_all(summary, {Path(p).stem: p for p in figures})
    click.echo(markdown(summary), err=True)


if __name__ == "__main__":
    main()
