"""Public video-QA files turned into training queries (the fields veripo.data.queries.load_queries reads).

Formats:
  video_r1  a JSON list of Video-R1 records: ``problem``, ``options`` (["A. red", ...]), ``solution``
            ("<answer>B</answer>"), ``problem_type``, ``data_type`` (video|image), ``path`` (media,
            often "./Folder/x.mp4", relative to the media root), optional ``problem_id``.
  jsonl     one object a line: ``question``, ``answer``, optional ``id``, ``options``, ``answer_type``,
            ``video`` or ``image``.
  csv       the same columns; ``options`` holds a JSON list or "|"-separated options.

Filters (``data_types``, ``problem_types``, ``data_sources``) leave records out before they are converted,
and ``max_records`` draws a seeded subsample of the converted ones. Every source record ends up converted,
left out by a filter or the subsample (counted per filter), or rejected with a reason code and a message
naming where it was (line or record number): nothing is dropped without a trace. A converted record's
gold answer scores 1.0 under the GRPO accuracy reward when a completion gives it verbatim; a record where
it would not is rejected, since it could only ever teach the policy noise.

Video queries and the rest go to separate files (``routed``): VerIPO's reasoning-activation stage
(iteration 0) trains on image and text queries, the video iterations on video ones.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Iterator, Literal

from veripo.answers import ANSWER_TYPES, extract_answer
from veripo.errors import InputError
from veripo.jsonio import read_json, read_text, require_regular_file
from veripo.rewards import accuracy_reward
from veripo.stage_config import MAX_QUESTION_CHARS, Section, doc

CHOICE_LETTERS = "ABCDEFGHIJ"

# Video-R1's problem types (the reward its training applies to each) and what they become here. OCR is
# scored there by word error rate and free-form by ROUGE: no reward of ours grades such answers.
VIDEO_R1_TYPES = {"multiple choice": "multiple_choice", "numerical": "numeric", "regression": "numeric",
                  "math": "math"}
VIDEO_R1_UNSCORABLE = ("OCR", "free-form", "open-ended")

# "B", "(B)", "B.", "B)", "B: blue", "B. blue": the letter leads, and what follows is not more of a word.
_LETTER_RE = re.compile(r"^\(?([A-J])\)?(?:[.:]?\s.*|[.:])?$", re.DOTALL)
_BARE_LETTER_RE = re.compile(r"^\(?([A-J])\)?\.?$")
# An option's own label: "A. red", "(A) red", "A) red", "A: red".
_LABEL_RE = re.compile(r"^\(?([A-J])[.):]\s*(.*)$", re.DOTALL)
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$")
# What marks an answer as an expression rather than a word: LaTeX, an operator between operands, a function.
_MATH_HINT_RE = re.compile(r"[\\$^=]|[\d)]\s*[-+*/]\s*[\w(]|\b(sqrt|pi|log|ln|sin|cos|tan)\b")


@dataclass(frozen=True, kw_only=True)
class ImportSpec(Section):
    """One entry of config ``data.imports``: a public file to turn into training queries."""

    SECTION: ClassVar[str] = "data.imports"
    source: str = doc("the file to import (relative to the run directory, or absolute)")
    format: Literal["video_r1", "jsonl", "csv"] = doc("how the source is laid out (see the module docstring)")
    media_root: str | None = doc("folder the records' media paths are relative to; None: the source's folder",
                                 default=None)
    check_media: bool = doc("reject a record whose video or image file does not exist; false when the media "
                            "are not reachable from where the import runs (GRPO checks them again)",
                            default=True)
    allow_outside_media_root: bool = doc("accept media paths that lead out of the media root (an absolute path "
                                         "elsewhere, '..', a symlink out of it); false: such a record is "
                                         "rejected (outside_media_root)", default=False)
    data_types: list[Literal["video", "image", "text"]] | None = doc(
        "import only records of these kinds (video_r1: the record's data_type; jsonl/csv: video, image or text by "
        "the medium it names); None: every kind", default=None)
    problem_types: list[str] | None = doc("import only records whose problem_type field is one of these "
                                          "(Video-R1's: multiple choice, numerical, regression, math); None: "
                                          "any", default=None)
    data_sources: list[str] | None = doc("import only records whose data_source field is one of these (Video-R1's "
                                         "source datasets); None: any", default=None)
    max_records: int | None = doc("keep at most this many of the converted queries, drawn at random (seed) and "
                                  "written in source order; None: all", default=None)
    seed: int = doc("seeds the draw of max_records", default=0)


class Rejected(Exception):
    """A record that cannot become a training query: a reason code (counted in the stats) and a message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class ImportResult:
    queries: list[dict]
    rejected: list[dict]
    stats: dict


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# Reading: each source record as (where, fields) or (where, Rejected) ----------------------------

def _read_video_r1(path: str) -> Iterator[tuple[str, dict | Rejected]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of records (Video-R1 format), got {type(data).__name__}")
    for index, item in enumerate(data, 1):
        if isinstance(item, dict):
            yield f"record {index}", item
        else:
            yield f"record {index}", Rejected("bad_record", f"expected a JSON object, got {_shown(item)}")


def _required(item: dict, key: str, kind: type = str) -> object:
    value = item.get(key)
    if value is None or value == "":
        raise Rejected("missing_field", f"field '{key}' is missing or empty")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Rejected("bad_field", f"field '{key}': expected a {kind.__name__}, got {_shown(value)}")
    return value


def _video_r1_fields(item: dict) -> dict:
    """A Video-R1 record in the plain fields (question, answer, answer_type, options, id, medium)."""
    problem_type = _required(item, "problem_type")
    if problem_type in VIDEO_R1_UNSCORABLE:
        raise Rejected("unscorable_problem_type",
                       f"problem_type {problem_type!r} has no reward here (we score multiple choice, numerical, "
                       f"regression and math)")
    if problem_type not in VIDEO_R1_TYPES:
        raise Rejected("unknown_problem_type",
                       f"unknown problem_type {problem_type!r}, expected one of {', '.join(VIDEO_R1_TYPES)}")
    solution = _required(item, "solution")
    answer = extract_answer(solution)
    if answer is None:
        raise Rejected("no_answer_tag", f"solution has no <answer>...</answer>: {_shown(solution)}")
    data_type = _required(item, "data_type")
    if data_type not in ("video", "image"):
        raise Rejected("bad_field", f"field 'data_type': expected video or image, got {_shown(data_type)}")
    return {"question": _required(item, "problem"), "answer": answer,
            "answer_type": VIDEO_R1_TYPES[problem_type], "options": item.get("options") or None,
            data_type: _required(item, "path")}


def _read_jsonl(path: str) -> Iterator[tuple[str, dict | Rejected]]:
    require_regular_file(path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            text = _decoded(raw, path, lineno)
            if not text.strip():
                continue
            where = f"line {lineno}"
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                yield where, Rejected("malformed_json", f"malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            except RecursionError:
                yield where, Rejected("malformed_json", "JSON nested too deeply to parse")
                continue
            if not isinstance(item, dict):
                yield where, Rejected("bad_record", f"expected a JSON object, got {_shown(item)}")
                continue
            yield where, item


def _decoded(raw: bytes, path: str, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {raw[exc.start]:#04x})", line=lineno) from None


def _read_csv(path: str) -> Iterator[tuple[str, dict | Rejected]]:
    text = read_text(path, "utf-8-sig")  # a spreadsheet's CSV often starts with a byte-order mark
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [col for col in ("question", "answer") if col not in header]
        if missing:
            raise InputError(path, f"the header lacks column(s) {', '.join(missing)} (it has {_shown(header)})",
                             line=1)
        start = reader.line_num + 1
        for row in reader:
            # a quoted field may span lines: a row is named by the line it starts on
            where, start = f"line {start}", reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield where, Rejected("bad_row", f"expected {len(header)} columns, got {len(row)}")
                continue
            yield where, {key: (value if value.strip() else None) for key, value in zip(header, row)}
    except csv.Error as exc:
        raise InputError(path, f"unreadable CSV ({exc})", line=reader.line_num) from None


# per format: its reader, the field holding a record's id, the record in plain fields
FORMATS = {"video_r1": (_read_video_r1, "problem_id", _video_r1_fields),
           "jsonl": (_read_jsonl, "id", dict),
           "csv": (_read_csv, "id", dict)}


# Selecting: filters on the source's fields, the subsample of the converted queries -----------------

# a record's field each filter reads, and the ImportSpec key listing the values it keeps
FILTERS = (("data_type", "data_types"), ("problem_type", "problem_types"), ("data_source", "data_sources"))


def _data_type(item: dict, fmt: str) -> object:
    if fmt == "video_r1":
        return item.get("data_type")
    # the plain formats have no data_type field: the medium a record names says it
    return next((key for key in ("video", "image") if item.get(key) not in (None, "")), "text")


def left_out_by(item: dict, spec: ImportSpec) -> str | None:
    """The field whose filter leaves the source record ``item`` out, or None when every filter keeps it. A
    record without the field is left out by a filter on it: it cannot be shown to match."""
    values = {"data_type": _data_type(item, spec.format), "problem_type": item.get("problem_type"),
              "data_source": item.get("data_source")}
    for field_name, key in FILTERS:
        allowed = getattr(spec, key)
        if allowed is not None and values[field_name] not in allowed:
            return field_name
    return None


def subsample(queries: list[dict], spec: ImportSpec) -> list[dict]:
    """At most ``spec.max_records`` of ``queries``, drawn with ``spec.seed``, in their source order."""
    if spec.max_records is None or len(queries) <= spec.max_records:
        return queries
    keep = sorted(random.Random(spec.seed).sample(range(len(queries)), spec.max_records))
    return [queries[i] for i in keep]


def routed(queries: list[dict]) -> tuple[list[dict], list[dict]]:
    """(video queries, image and text queries): the second are the reasoning-activation set's."""
    video = [q for q in queries if "video" in q]
    return video, [q for q in queries if "video" not in q]


# Converting the plain fields into a training query ------------------------------------------------

def _options(value: object) -> list[str] | None:
    """A list of option strings in letter order, labelled "A. ..." where the source left them bare."""
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise Rejected("bad_options", f"options look like a JSON list but are not ({exc.msg})") from None
            except RecursionError:
                raise Rejected("bad_options", "options are JSON nested too deeply to parse") from None
        else:
            value = [part.strip() for part in value.split("|")]
    if not isinstance(value, list) or not all(isinstance(o, str) and o.strip() for o in value):
        raise Rejected("bad_options", f"options: expected a list of non-empty strings, got {_shown(value)}")
    if len(value) > len(CHOICE_LETTERS):
        raise Rejected("bad_options", f"{len(value)} options; at most {len(CHOICE_LETTERS)} (A-J) are scored")
    labelled = []
    for letter, option in zip(CHOICE_LETTERS, value):
        option = option.strip()
        label = _LABEL_RE.match(option)
        if label and label.group(1) != letter:
            # the reward reads the options in list order: a letter out of place would mean another option
            raise Rejected("bad_options", f"option {_shown(option)} is labelled {label.group(1)} at the place of "
                                          f"{letter}: options must be listed in letter order")
        labelled.append(option if label else f"{letter}. {option}")
    return labelled


def _option_text(option: str) -> str:
    label = _LABEL_RE.match(option)
    return (label.group(2) if label else option).strip()


def _choice(answer: str, options: list[str] | None) -> str:
    """The gold letter of a multiple-choice answer: "B", "(B)", "B. blue" or an option's text."""
    text = answer.strip().strip("$").strip()
    match = _LETTER_RE.match(text)
    if match:
        letter = match.group(1)
    else:
        same = [CHOICE_LETTERS[i] for i, o in enumerate(options or []) if _option_text(o).lower() == text.lower()]
        if len(same) != 1:
            raise Rejected("bad_answer", f"a multiple-choice answer must be an option letter A-J or one option's "
                                         f"text, got {_shown(answer)}")
        letter = same[0]
    if options is not None and letter not in CHOICE_LETTERS[:len(options)]:
        raise Rejected("letter_not_in_options",
                       f"answer {letter!r} is not among the {len(options)} options (A-{CHOICE_LETTERS[len(options) - 1]})")
    return letter


def _number(answer: str) -> str | None:
    """``answer`` as a plain number string ("1,000" -> "1000", "$3.5$" -> "3.5"), or None."""
    text = answer.strip().strip("$").strip()
    if _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return text if math.isfinite(value) else None


def answer_type_of(answer: str, options: list[str] | None) -> str:
    """The answer type of a record that does not state one: an option letter (or an option's text) with
    options is multiple choice; a number is numeric; LaTeX or an expression is math."""
    text = answer.strip()
    if options:
        if _BARE_LETTER_RE.match(text) or any(_option_text(o).lower() == text.lower() for o in options):
            return "multiple_choice"
        raise Rejected("unknown_answer_type", f"options are given but the answer {_shown(answer)} is neither an "
                                              f"option letter nor an option's text; give answer_type")
    if _number(text) is not None:
        return "numeric"
    if _MATH_HINT_RE.search(text):
        return "math"
    raise Rejected("unknown_answer_type", f"cannot tell the answer type of {_shown(answer)} (not an option letter "
                                          f"with options, a number or a math expression); give answer_type")


def _gold(answer: object) -> str:
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise Rejected("bad_answer", f"expected a string or number answer, got {_shown(answer)}")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise Rejected("bad_answer", f"expected a finite number, got {answer}")
    text = str(answer).strip()
    if not text:
        raise Rejected("missing_field", "field 'answer' is missing or empty")
    return text


def _media(fields: dict, spec: ImportSpec, out_dir: str) -> dict:
    """{"video": path} or {"image": path} as the output file's loader resolves it, or {} for a text query."""
    given = {key: fields[key] for key in ("video", "image") if fields.get(key) is not None}
    if len(given) > 1:
        raise Rejected("bad_field", "both a video and an image: a query carries one medium")
    if not given:
        return {}
    ((key, path),) = given.items()
    if not isinstance(path, str) or not path.strip():
        raise Rejected("bad_field", f"field '{key}': expected a path, got {_shown(path)}")
    root = spec.media_root if spec.media_root is not None else os.path.dirname(spec.source)
    resolved = path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
    if not spec.allow_outside_media_root:
        # symlinks followed: a link inside the root that points out of it leads out as '..' does
        real_root = os.path.realpath(root or os.curdir)
        if os.path.commonpath([real_root, os.path.realpath(resolved)]) != real_root:
            raise Rejected("outside_media_root", f"{key} {_shown(path)} leads out of the media root {real_root} "
                                                 f"(allow_outside_media_root: true accepts it)")
    if spec.check_media and not os.path.exists(resolved):
        raise Rejected("missing_media", f"{key} file not found: {resolved}")
    if spec.check_media and not os.path.isfile(resolved):
        raise Rejected("bad_media", f"{key} is not a regular file (a directory, FIFO or device): {resolved}")
    # load_queries resolves a relative path against the output's folder; an absolute one stays absolute
    written = resolved if os.path.isabs(resolved) else os.path.relpath(resolved, out_dir or os.curdir)
    return {key: written}


def to_query(fields: dict, spec: ImportSpec, out_dir: str, max_question_chars: int = MAX_QUESTION_CHARS) -> dict:
    """A training query from plain fields (question, answer, optional answer_type, options, id, video or
    image); Rejected when it cannot be one. The id is left to the caller."""
    question = fields.get("question")
    if not isinstance(question, str) or not question.strip():
        raise Rejected("missing_field" if not question else "bad_field",
                       f"field 'question': expected a non-empty string, got {_shown(question)}")
    if len(question) > max_question_chars:
        raise Rejected("question_too_long", f"field 'question': {len(question)} characters, more than "
                                            f"data.max_question_chars ({max_question_chars})")
    answer = _gold(fields.get("answer"))
    options = _options(fields.get("options"))
    kind = fields.get("answer_type") or answer_type_of(answer, options)
    if kind not in ANSWER_TYPES:
        raise Rejected("bad_field", f"field 'answer_type': expected one of {', '.join(ANSWER_TYPES)}, got {_shown(kind)}")
    query = {"question": question.strip()}
    if kind == "multiple_choice":
        answer = _choice(answer, options)
        if options and not all(o in question for o in options):
            # the prompt shows the question alone: the options must be in it
            query["question"] += "\n" + "\n".join(options)
        if options:
            query["options"] = options
    elif kind == "numeric":
        number = _number(answer)
        if number is None:
            raise Rejected("bad_answer", f"a numeric answer must be a number, got {_shown(answer)}")
        answer = number
    query.update(answer=answer, answer_type=kind, **_media(fields, spec, out_dir))
    perfect = f"<think>.</think><answer>{answer}</answer>"
    if accuracy_reward(perfect, query) != 1.0:
        raise Rejected("unscorable_answer", f"the gold answer {_shown(answer)} does not score 1.0 against itself "
                                            f"as {kind}")
    return query


def _source_id(value: object, default: str) -> str:
    """The id as a string: a file mixing 1 and "2" would otherwise break a later stage's sort, and 1 and
    "1" would be two ids."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected("bad_field", f"field 'id': expected a string or integer, got {_shown(value)}")
    return str(value)


def import_queries(spec: ImportSpec, name: str, out_path: str,
                   max_question_chars: int = MAX_QUESTION_CHARS) -> ImportResult:
    """Every record of ``spec.source`` converted or rejected, with the counts. ``name`` derives the ids of
    records that carry none (name-line or name-record number, stable while the file is); ``out_path`` is
    where the queries will be written (media paths are made relative to its folder)."""
    out_dir = os.path.dirname(out_path)
    queries: list[dict] = []
    rejected: list[dict] = []
    left_out: Counter = Counter()
    first_seen: dict = {}
    read, id_key, plain_fields = FORMATS[spec.format]
    for where, item in read(spec.source):
        number = where.rpartition(" ")[2]
        query_id = None
        try:
            if isinstance(item, Rejected):
                raise item
            field_name = left_out_by(item, spec)
            if field_name is not None:
                left_out[field_name] += 1
                continue
            query_id = _source_id(item.get(id_key), f"{name}-{number}")
            if query_id in first_seen:
                raise Rejected("duplicate_id", f"duplicate id {query_id!r} (first at {first_seen[query_id]})")
            query = {"id": query_id, **to_query(plain_fields(item), spec, out_dir, max_question_chars)}
        except Rejected as exc:
            rejected.append({"where": where, "id": query_id, "reason": exc.reason, "message": exc.message})
            continue
        first_seen[query_id] = where
        queries.append(query)
    converted = len(queries)
    queries = subsample(queries, spec)
    media = Counter(next((k for k in ("video", "image") if k in q), "none") for q in queries)
    video, activation = routed(queries)
    stats = {
        "name": name, "source": spec.source, "format": spec.format,
        "records": converted + len(rejected) + sum(left_out.values()),
        "converted": len(queries), "rejected": len(rejected),
        "left_out": {field_name: left_out[field_name] for field_name, key in FILTERS
                     if getattr(spec, key) is not None},
        "subsampled_out": converted - len(queries),
        "video_queries": len(video), "activation_queries": len(activation),
        "answer_types": dict(Counter(q["answer_type"] for q in queries)),
        "media": dict(media),
        "rejections": dict(Counter(r["reason"] for r in rejected).most_common()),
    }
    return ImportResult(queries, rejected, stats)


def summary(result: ImportResult, out_path: str, rejected_path: str, activation_path: str) -> str:
    """A few lines for the terminal: what came in, what went out, why the rest did not."""
    s = result.stats
    lines = [f"{s['name']}: {s['converted']} of {s['records']} records of {s['source']} imported: "
             f"{s['video_queries']} video queries into {out_path}, {s['activation_queries']} image/text queries "
             f"into {activation_path}"]
    selected = [f"{n} by {field_name}" for field_name, n in s["left_out"].items()]
    if s["subsampled_out"]:
        selected.append(f"{s['subsampled_out']} by max_records")
    if selected:
        lines.append(f"  left out: {', '.join(selected)}")
    if s["rejected"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in s["rejections"].items())
        lines.append(f"  {s['rejected']} rejected ({reasons}), each listed in {rejected_path}; for example:")
        lines += [f"    {r['where']}: {r['reason']}: {r['message']}" for r in result.rejected[:5]]
    return "\n".join(lines)
