"""Score a benchmark's predictions (our JSONL or the VerIPO authors' JSON) into a score JSON.

    python scripts/score.py --benchmark vsi_bench --predictions preds.jsonl --output score.json

The same command as ``veripo score`` (veripo/commands/score.py), runnable from a checkout without
installing the package. The file keeps full precision; the printed table is rounded to 2 decimals.
"""
import _bootstrap  # noqa: F401

from veripo.commands.score import score

if __name__ == "__main__":
    score()
