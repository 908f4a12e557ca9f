"""Turn a public video-QA file (Video-R1 JSON, JSONL, CSV) into training queries (video ones and the image/text
ones of the activation stage apart), listing what it rejects."""
import logging
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging
from veripo.stage_config import MAX_QUESTION_CHARS


@click.command()
@click.option("--name", required=True, help="the import's name in config data.imports (derives missing ids)")
@click.option("--spec", type=JSON, required=True, help="its data.imports entry (JSON)")
@click.option("--out", required=True, help="the video queries (JSONL)")
@click.option("--activation-out", required=True,
              help="the image and text queries, for the reasoning-activation stage (JSONL)")
@click.option("--rejected", "rejected_out", required=True, help="one line per rejected record (JSONL)")
@click.option("--stats", "stats_out", required=True, help="counts by answer type, medium and rejection reason")
@click.option("--max-question-chars", type=click.IntRange(min=1), default=MAX_QUESTION_CHARS, show_default=True,
              help="config data.max_question_chars: a longer question is rejected")
@main_guard
def main(name, spec, out, activation_out, rejected_out, stats_out, max_question_chars):
    setup_logging()
    from veripo.data.importers import ImportSpec, import_queries, routed, summary
    from veripo.errors import InputError
    from veripo.jsonio import write_json, write_jsonl

    if os.path.dirname(activation_out) != os.path.dirname(out):
        # the media paths are written relative to --out's folder
        raise click.BadParameter(f"{activation_out}: expected a file in the folder of --out ({out})",
                                 param_hint="--activation-out")
    result = import_queries(ImportSpec.from_config(spec, f"data.imports.{name}"), name, out, max_question_chars)
    write_jsonl(rejected_out, result.rejected)
    write_json(stats_out, result.stats)
    text = summary(result, out, rejected_out, activation_out)
    logging.getLogger("data_import").info(text)
    if not result.queries:
        raise InputError(result.stats["source"], f"no record could be imported ({result.stats['rejected']} "
                                                 f"rejected, listed in {rejected_out})")
    video, activation = routed(result.queries)
    # both files, one of them possibly empty: the workflow declares both; a GRPO stage pointed at an empty
    # one stops, naming it
    write_jsonl(activation_out, activation)
    write_jsonl(out, video)
    click.echo(text)


if __name__ == "__main__":
    main()
