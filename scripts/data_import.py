"""Turn a public video-QA file (Video-R1 JSON, JSONL, CSV) into training queries, listing what it rejects."""
import logging

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging
from veripo.stage_config import MAX_QUESTION_CHARS


@click.command()
@click.option("--name", required=True, help="the import's name in config data.imports (derives missing ids)")
@click.option("--spec", type=JSON, required=True, help="its data.imports entry (JSON)")
@click.option("--out", required=True, help="training queries (JSONL)")
@click.option("--rejected", "rejected_out", required=True, help="one line per rejected record (JSONL)")
@click.option("--stats", "stats_out", required=True, help="counts by answer type, medium and rejection reason")
@click.option("--max-question-chars", type=click.IntRange(min=1), default=MAX_QUESTION_CHARS, show_default=True,
              help="config data.max_question_chars: a longer question is rejected")
@main_guard
def main(name, spec, out, rejected_out, stats_out, max_question_chars):
    setup_logging()
    from veripo.data.importers import ImportSpec, import_queries, summary
    from veripo.errors import InputError
    from veripo.jsonio import write_json, write_jsonl

    result = import_queries(ImportSpec.from_config(spec, f"data.imports.{name}"), name, out, max_question_chars)
    write_jsonl(rejected_out, result.rejected)
    write_json(stats_out, result.stats)
    text = summary(result, out, rejected_out)
    logging.getLogger("data_import").info(text)
    if not result.queries:
        raise InputError(result.stats["source"], f"no record could be imported ({result.stats['rejected']} "
                                                 f"rejected, listed in {rejected_out})")
    write_jsonl(out, result.queries)
    click.echo(text)


if __name__ == "__main__":
    main()
