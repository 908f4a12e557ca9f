"""``veripo pairs show``: DPO pairs (``iterK/dpo/pairs.jsonl``) side by side, chosen | rejected.

Each pair gets a header (pair id, kind, query, the query's question and gold answer, the verdict's
reasons for rejecting the rejected side), then the two completions in two columns wrapped to the
terminal's width; joined back, a column holds its completion word for word (line breaks kept).
"""
from __future__ import annotations

import itertools
import shutil
import textwrap

import click

from veripo.cli import main_guard, terminal_safe

KINDS = ("consistency", "penalty", "reflection")
# What the view reads; a file without them is not a pairs file (dpo_build_pairs writes them all).
PAIR_TYPES = {"pair_id": str, "query_id": str, "kind": str, "chosen": str, "rejected": str,
              "rejected_reasons": list, "query": dict}
QUERY_FIELDS = ("question", "answer")
SEPARATOR = " | "
MIN_COLUMN = 20


def read_pairs(path: str) -> list[dict]:
    """The pairs of a pairs.jsonl file; a line that is not a pair is an InputError naming file, line, field."""
    from veripo import jsonio
    from veripo.errors import InputError

    rows = jsonio.read_jsonl(path, required=PAIR_TYPES)
    jsonio.require_types(rows, PAIR_TYPES, path)
    for row in rows:
        for key in QUERY_FIELDS:
            if key not in row["query"]:
                raise InputError(path, "missing required field", line=row["_line"], field=f"query.{key}")
    return rows


def select(pairs: list[dict], kinds: tuple[str, ...] = (), query: str | None = None,
           limit: int | None = None) -> list[dict]:
    """The pairs of the given kinds (all when none) and query, in file order, at most ``limit``."""
    chosen = (p for p in pairs if (not kinds or p["kind"] in kinds) and (query is None or p["query_id"] == query))
    return list(itertools.islice(chosen, limit))


def wrap(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` characters, its own line breaks kept (an empty line stays)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, width, break_on_hyphens=False) or [""]
    return lines


def side_by_side(left: str, right: str, width: int) -> list[str]:
    """Two texts in two columns of equal width, ``SEPARATOR`` between them, ``width`` characters in all."""
    column = max((width - len(SEPARATOR)) // 2, MIN_COLUMN)
    rows = itertools.zip_longest(wrap(left, column), wrap(right, column), fillvalue="")
    return [f"{a:<{column}}{SEPARATOR}{b}".rstrip() for a, b in rows]


def labelled(label: str, text: str, width: int) -> list[str]:
    """``label: text``, continuation lines indented under the text."""
    indent = len(label) + 2
    lines = wrap(text, max(width - indent, MIN_COLUMN))
    return [f"{label}: {lines[0]}"] + [" " * indent + line for line in lines[1:]]


def side_label(pair: dict, side: str) -> str:
    if side == "chosen" and pair["kind"] == "reflection" and pair.get("chosen_sources"):
        origin = "built from " + " + ".join(pair["chosen_sources"])
    else:
        origin = f"rollout {pair.get(side + '_rollout', '?')}"
    tokens = pair.get(f"{side}_think_tokens")
    return f"{side.upper()} ({origin}" + (f", {tokens} think tokens)" if tokens is not None else ")")


def _escaped(value):
    """``value`` with every string in it terminal_safe (before wrapping, so columns keep their width)."""
    if isinstance(value, str):
        return terminal_safe(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def render_pair(pair: dict, width: int) -> list[str]:
    """One pair's header and its two columns; text from the file is escaped, never sent raw to the terminal."""
    pair = _escaped(pair)
    query = pair["query"]
    head = f"pair {pair['pair_id']}  kind {pair['kind']}  query {pair['query_id']}"
    if pair.get("iteration") is not None:
        head += f"  iteration {pair['iteration']}"
    reasons = "; ".join(str(r) for r in pair["rejected_reasons"]) or "(none given)"
    lines = ["=" * width, *wrap(head, width)]
    lines += labelled("question", str(query["question"]), width)
    lines += labelled("gold answer", f"{query['answer']}" + (f" ({query['answer_type']})" if query.get("answer_type")
                                                            else ""), width)
    lines += labelled("rejected because", reasons, width)
    lines += side_by_side(side_label(pair, "chosen"), side_label(pair, "rejected"), width)
    column = max((width - len(SEPARATOR)) // 2, MIN_COLUMN)
    lines.append("-" * column + "-+-" + "-" * column)
    lines += side_by_side(pair["chosen"], pair["rejected"], width)
    return lines


@click.group("pairs")
def pairs() -> None:
    """Look at the DPO pairs a run built (iterK/dpo/pairs.jsonl)."""


@pairs.command("show", short_help="Print pairs side by side, chosen | rejected.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True,
              help="Only pairs of this kind (repeat for several; default: every kind).")
@click.option("--query", default=None, help="Only the pairs of this query id (the pairs' query_id).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many pairs.")
@click.option("--width", type=click.IntRange(min=2 * MIN_COLUMN + len(SEPARATOR)), default=None,
              help="Line width (default: the terminal's, or $COLUMNS).")
@main_guard
def show(file: str, kinds: tuple[str, ...], query: str | None, limit: int | None, width: int | None) -> None:
    """Print the pairs of FILE side by side: chosen | rejected, wrapped to the terminal width.

    Each pair's header names its id, kind and query, the question, the gold answer and why the
    verifier rejected the rejected side.

    \b
    veripo pairs show iter3/dpo/pairs.jsonl --limit 2
    veripo pairs show iter3/dpo/pairs.jsonl --kind reflection --query v0004
    """
    rows = read_pairs(file)
    shown = select(rows, kinds, query, limit)
    width = width or shutil.get_terminal_size().columns
    for pair in shown:
        click.echo("\n".join(render_pair(pair, width)))
    click.echo(terminal_safe(f"{len(shown)} of {len(rows)} pairs shown ({file})"))
