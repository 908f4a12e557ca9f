"""The ``veripo`` console command (``pip install -e .`` installs it): try a checkpoint, look at the DPO
pairs a run built, score predictions, export a checkpoint with a model card. The commands sit above every
stage: they reuse the stages' functions (evaluation backends and inputs, scoring, JSONL readers) and hold
only their presentation."""
from __future__ import annotations

import click

from veripo.commands.export import export
from veripo.commands.infer import infer
from veripo.commands.pairs import pairs
from veripo.commands.score import score


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """VerIPO from the command line, run from a run's directory (where base/, iterK/ and data/ are).

    \b
    veripo infer        ask a checkpoint one question (video, image or text): reasoning and answer
    veripo pairs show   the DPO pairs of an iteration, chosen | rejected side by side
    veripo score        score a benchmark's predictions (as scripts/score.py)
    veripo export       one checkpoint of a run as a folder with its settings and a model card

    `veripo COMMAND --help` says more.
    """


main.add_command(infer)
main.add_command(pairs)
main.add_command(score)
main.add_command(export)
