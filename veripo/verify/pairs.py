"""Chosen/rejected pairs from one query's verified rollouts ("O_i => pair" and "O_i + O_j => pair").

chosen: right, consistent, clean (format, length, no repetition); the longest reasoning first, the
next pair takes the next longest (then round again).
- consistency: rejected = a clean rollout that is wrong, or right but judged INCONSISTENT.
- penalty: rejected = a repetitive, too short, truncated or malformed rollout.
- reflection (O_i + O_j): chosen = a wrong rollout's reasoning + the reflection cue + a right rollout's
  reasoning and answer, as one well-formed ``<think>..</think><answer>..</answer>``; rejected = that
  wrong rollout. Only clean wrong rollouts serve (their reasoning is copied into the chosen side).
A rollout judged UNKNOWN or UNPARSABLE, or a partial numeric answer, is never chosen; kinds take turns
in the configured order until ``max_per_query`` pairs or no candidates are left; all-wrong or
all-clean-and-right groups give nothing. Every pair names its kind and the rollouts it was made of,
and carries the token ids of both sides (a rollout's as sampled). A query's group is all its rollouts
of the stage (every epoch's), told apart by their stage-unique ``rollout_id``.
With ``rotate_kinds`` a query's turn starts at a kind picked by a hash of its id: with fewer pairs
per query than kinds, every kind still gets its share over the data set (otherwise the first kinds
would take all places whenever they have candidates).
"""
from __future__ import annotations

import zlib
from collections import Counter

from veripo.errors import InputError
from veripo.jsonio import unique_index
from veripo.answers import extract_answer as answer_text, extract_think as think_text
from veripo.verify.judges.verdicts import CONSISTENT, INCONSISTENT
from veripo.rewards import is_well_formed

KINDS = ("consistency", "penalty", "reflection")


def is_chosen(v: dict) -> bool:
    c = v["checks"]
    return v["clean"] and c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == CONSISTENT


def rejected_kind(v: dict) -> str | None:
    """Which of consistency/penalty may use this rollout as its rejected side (penalty takes precedence)."""
    c = v["checks"]
    if not v["clean"]:
        return "penalty"
    if c["accuracy"]["label"] == "wrong":
        return "consistency"
    if c["accuracy"]["label"] == "right" and c["consistency"]["verdict"] == INCONSISTENT:
        return "consistency"
    return None


def is_reflection_source(v: dict) -> bool:
    """A wrong rollout whose reasoning may open a reflection pair's chosen side."""
    return v["clean"] and v["checks"]["accuracy"]["label"] == "wrong"


def reflection_text(wrong: str, right: str, cue: str) -> str | None:
    """``<think>{wrong reasoning} {cue} {right reasoning}</think><answer>{right answer}</answer>``."""
    w, r, a = think_text(wrong), think_text(right), answer_text(right)
    if not w or not r or a is None:
        return None
    text = f"<think>{w} {cue.strip()} {r}</think><answer>{a}</answer>"
    return text if is_well_formed(text) else None


def kind_order(query_id: str, kinds: list[str], rotate: bool) -> list[str]:
    """The order in which a query's kinds take turns: as configured, or rotated by a stable hash."""
    if not rotate:
        return list(kinds)
    start = zlib.crc32(str(query_id).encode("utf-8")) % len(kinds)
    return list(kinds[start:]) + list(kinds[:start])


def build_pairs(group: list[tuple[dict, dict]], kinds: list[str], max_per_query: int,
                reflection_cue: str | None = None, count_think_tokens=None, rotate_kinds: bool = False,
                tokenize=None) -> tuple[list[dict], Counter]:
    """``group``: (rollout row, verdict) of one query. Returns (pair records, dropped candidates by reason).

    Each side carries its token ids: a rollout's are the sampled ``completion_ids``; a reflection's
    chosen side was never sampled, so ``tokenize(text) -> ids`` (the policy tokenizer, EOS appended:
    the constructed answer is complete) encodes it. ``reflection_cue`` (config ``pairs.reflection_cue``)
    and ``tokenize`` are needed when ``kinds`` has reflection; ``count_think_tokens(think) -> int``
    measures a reflection's chosen think, which no verdict has measured (without it the two sources'
    counts are added). A candidate whose two sides are the same tokens teaches nothing and is dropped
    (counted as ``same_tokens``); every kept pair is checked against ``pair_problems``.
    """
    if "reflection" in kinds and not reflection_cue:
        raise ValueError("pairs of kind 'reflection' need a reflection cue (config key 'pairs.reflection_cue')")
    if "reflection" in kinds and tokenize is None:
        raise ValueError("pairs of kind 'reflection' need the policy tokenizer for their constructed chosen side")
    dropped: Counter = Counter()
    chosen = sorted((rv for rv in group if is_chosen(rv[1])),
                    key=lambda rv: (-rv[1]["checks"]["length"]["think_tokens"], rv[0]["rollout_id"]))
    if not chosen:
        return [], dropped
    kinds = kind_order(chosen[0][0]["query_id"], kinds, rotate_kinds)
    pools = {k: [rv for rv in group if rejected_kind(rv[1]) == k] for k in kinds if k != "reflection"}
    if "reflection" in kinds:
        pools["reflection"] = [rv for rv in group if is_reflection_source(rv[1])]
    rows = {row["rollout_id"]: row for row, _ in group}
    verdicts = {v["rollout_id"]: v for _, v in group}
    pairs, used = [], set()
    while len(pairs) < max_per_query and any(pools.values()):
        for kind in kinds:
            if len(pairs) >= max_per_query or not pools[kind]:
                continue
            rej_row, rej_v = pools[kind].pop(0)
            ch_row, ch_v = chosen[len(pairs) % len(chosen)]
            if (kind, ch_row["rollout_id"], rej_row["rollout_id"]) in used:
                continue
            if kind == "reflection":
                text = reflection_text(rej_row["completion"], ch_row["completion"], reflection_cue)
                if text is None:
                    dropped["reflection_not_well_formed"] += 1
                    continue
                ids = list(tokenize(text))
                sources = [rej_row["rollout_id"], ch_row["rollout_id"]]
                chosen_tokens = (count_think_tokens(think_text(text)) if count_think_tokens else
                                 rej_v["checks"]["length"]["think_tokens"] + ch_v["checks"]["length"]["think_tokens"])
            else:
                text, ids, sources = ch_row["completion"], list(ch_row["completion_ids"]), [ch_row["rollout_id"]]
                chosen_tokens = ch_v["checks"]["length"]["think_tokens"]
            used.add((kind, ch_row["rollout_id"], rej_row["rollout_id"]))
            if ids == list(rej_row["completion_ids"]):
                dropped["same_tokens"] += 1
                continue
            pair = {
                "pair_id": f"{ch_row['query_id']}:{kind}:{len(pairs)}", "query_id": ch_row["query_id"],
                "kind": kind, "iteration": ch_row["iteration"],
                "chosen": text, "rejected": rej_row["completion"],
                "chosen_ids": ids, "rejected_ids": list(rej_row["completion_ids"]),
                "chosen_rollout": ch_row["rollout_id"], "rejected_rollout": rej_row["rollout_id"],
                "chosen_sources": sources, "rejected_reasons": rej_v["reasons"], "query": ch_row["query"],
                "chosen_think_tokens": chosen_tokens,
                "rejected_think_tokens": rej_v["checks"]["length"]["think_tokens"],
            }
            problems = pair_problems(pair, rows, verdicts)
            if problems:
                # The selection above is meant to make these impossible: a violation is a bug, never data to train on.
                raise AssertionError(f"pair {pair['pair_id']} breaks the pair invariants: {'; '.join(problems)}")
            pairs.append(pair)
    return pairs, dropped


def pair_problems(pair: dict, rows: dict, verdicts: dict) -> list[str]:
    """What makes ``pair`` wrong, given the rollout rows and verdicts by ``rollout_id``; [] when none.

    Both sides differ as token sequences; the rejected side is a real rollout, verbatim (text and
    sampled ids), with its verdict's reasons, and a rollout its kind may reject. Consistency/penalty:
    the chosen side is, verbatim, a rollout that is right, consistent and clean (well formed, not
    truncated). Reflection: the chosen side opens with the rejected rollout's reasoning, ends with a
    right rollout's answer and names both sources."""
    out = []
    kind = pair["kind"]
    if pair["chosen_ids"] == pair["rejected_ids"]:
        out.append("chosen and rejected are the same tokens")
    rej, rej_v = rows.get(pair["rejected_rollout"]), verdicts.get(pair["rejected_rollout"])
    ch, ch_v = rows.get(pair["chosen_rollout"]), verdicts.get(pair["chosen_rollout"])
    if rej is None or rej_v is None or ch is None or ch_v is None:
        return out + ["a side names a rollout without a row or a verdict"]
    if pair["chosen_rollout"] == pair["rejected_rollout"]:
        out.append("chosen and rejected name the same rollout")
    if not (rej["query_id"] == ch["query_id"] == pair["query_id"]):
        out.append("the sides come from different queries")
    if pair["rejected"] != rej["completion"] or pair["rejected_ids"] != list(rej["completion_ids"]):
        out.append("the rejected side is not its rollout verbatim")
    if pair["rejected_reasons"] != rej_v["reasons"] or not rej_v["reasons"]:
        out.append("the rejected side does not carry its verdict's reasons")
    # Checked from the verdict's fields, not with the predicates that selected the pair: a bug in the
    # selection must not pass its own test.
    ch_c, rej_c = ch_v["checks"], rej_v["checks"]
    if not (ch_v["clean"] and ch_c["accuracy"]["label"] == "right" and ch_c["consistency"]["verdict"] == CONSISTENT
            and not ch.get("truncated") and is_well_formed(ch["completion"])):
        out.append("the chosen rollout is not right, consistent, clean and complete")
    rej_wrong = rej_c["accuracy"]["label"] == "wrong"
    if kind == "reflection":
        if not (rej_v["clean"] and rej_wrong):
            out.append("a reflection's rejected side is not a clean wrong rollout")
        if pair["chosen_sources"] != [pair["rejected_rollout"], pair["chosen_rollout"]]:
            out.append("a reflection's chosen side does not name both sources")
        answer = answer_text(ch["completion"])
        if answer is None or not pair["chosen"].endswith(f"<answer>{answer}</answer>"):
            out.append("a reflection's chosen side does not end with the right rollout's answer")
        if not pair["chosen"].startswith(f"<think>{think_text(rej['completion'])}"):
            out.append("a reflection's chosen side does not open with the rejected reasoning")
        if not is_well_formed(pair["chosen"]):
            out.append("a reflection's chosen side is not well formed")
    else:
        inconsistent = rej_c["consistency"]["verdict"] == INCONSISTENT
        allowed = (not rej_v["clean"]) if kind == "penalty" else (rej_v["clean"] and (rej_wrong or inconsistent))
        if not allowed:
            out.append(f"the rejected rollout is not one a {kind} pair rejects")
        if pair["chosen"] != ch["completion"] or pair["chosen_ids"] != list(ch["completion_ids"]):
            out.append("the chosen side is not its rollout verbatim")
        if pair["chosen_sources"] != [pair["chosen_rollout"]]:
            out.append("the chosen side names other sources than its rollout")
    return out


def join_verdicts(rows: list[dict], verdicts: list[dict], rollouts_path: object,
                  verdicts_path: object) -> dict[str, list[tuple[dict, dict]]]:
    """{query id: [(rollout row, its verdict)]}: one verdict per rollout, joined on the unique ``rollout_id``."""
    by_id = unique_index(rows, "rollout_id", rollouts_path)
    judged = unique_index(verdicts, "rollout_id", verdicts_path)
    groups: dict = {}
    for rid, v in judged.items():
        row = by_id.get(rid)
        if row is None:
            raise InputError(verdicts_path, f"verdict for unknown rollout {rid!r}", line=v.get("_line"),
                             field="rollout_id")
        if row["query_id"] != v["query_id"]:
            raise InputError(verdicts_path, f"query {v['query_id']!r} differs from its rollout's {row['query_id']!r}",
                             line=v.get("_line"), field="query_id")
        groups.setdefault(row["query_id"], []).append((row, v))
    missing = [rid for rid in by_id if rid not in judged]
    if missing:
        line = by_id[missing[0]].get("_line")
        raise InputError(rollouts_path, f"{len(missing)} rollouts have no verdict in {verdicts_path}, the first "
                         f"{missing[0]!r}", line=line, field="rollout_id")
    return groups


def build_all_pairs(groups: dict[str, list[tuple[dict, dict]]], cfg: dict, tokenize,
                    count_think_tokens) -> tuple[list[dict], Counter]:
    """Pairs of every query (sorted by query id) under the ``pairs`` config section, and the drops."""
    pairs, dropped = [], Counter()
    for q in sorted(groups):
        ps, d = build_pairs(groups[q], cfg["kinds"], cfg["max_per_query"], cfg.get("reflection_cue"),
                            count_think_tokens, cfg["rotate_kinds"], tokenize)
        pairs += ps
        dropped += d
    return pairs, dropped
