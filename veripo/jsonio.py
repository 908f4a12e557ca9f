"""JSON/JSONL reading with precise error locations, and atomic writes (temp name, then rename)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from veripo.errors import InputError


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict]:
    """All records of a JSONL file; every record must be an object holding the ``required`` fields."""
    return list(iter_jsonl(path, required))


def iter_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> Iterator[dict]:
    required = tuple(required)
    require_regular_file(path)
    # Read bytes and decode line by line, so bad UTF-8 is reported with its line.
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            rec = loads(line, path, lineno)
            if not isinstance(rec, dict):
                raise InputError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
            for key in required:
                if key not in rec:
                    raise InputError(path, "missing required field", line=lineno, field=key)
            rec["_line"] = lineno
            yield rec


def require_regular_file(path: str | os.PathLike) -> None:
    """An InputError unless ``path`` is a regular file (after symlinks): a FIFO or a device would block
    the read forever or never end, and a directory is no file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "file does not exist") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise InputError(path, f"expected a regular file, got {kind}")


def loads(text: str, path: object, line: int | None = None) -> Any:
    """``json.loads`` with the error as an InputError naming file and line: malformed JSON, or nesting so
    deep that the parser runs out of stack (RecursionError), which no real record needs."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f" at column {exc.colno}" if line is not None else ""
        raise InputError(path, f"malformed JSON ({exc.msg}{where})",
                         line=line if line is not None else exc.lineno) from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply to parse", line=line) from None


def _decode(raw: bytes, path: object, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
                         line=lineno) from None


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "an object", type(None): "null"}


def require_types(rows: Iterable[dict], types: dict[str, type | tuple[type, ...]], path: object) -> None:
    """Every row holds each field of ``types`` with a value of that type (a bool is no int or float);
    otherwise an InputError naming the file, the row's line and the field."""
    for row in rows:
        for key, expected in types.items():
            expected = expected if isinstance(expected, tuple) else (expected,)
            if key not in row:
                raise InputError(path, "missing required field", line=row.get("_line"), field=key)
            value = row[key]
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in expected)
                got = _TYPE_NAMES.get(type(value), type(value).__name__)
                raise InputError(path, f"expected {wanted}, got {got}", line=row.get("_line"), field=key)


def unique_index(rows: list[dict], key: str, path: object) -> dict:
    """{row[key]: row}; a repeated key is an InputError naming the file, the line, the field and the
    line it first appeared on."""
    out: dict = {}
    for row in rows:
        value = row[key]
        if value in out:
            raise InputError(path, f"duplicate {key} {value!r} (first on line {out[value].get('_line')})",
                             line=row.get("_line"), field=key)
        out[value] = row
    return out


def require_token_ids(rows: list[dict], fields: Iterable[str], path: object, what: str = "token ids") -> None:
    """Each of ``fields`` holds a non-empty list of ints (token ids; a bool is not one), else an
    InputError naming the file, line and field."""
    for row in rows:
        for f in fields:
            ids = row.get(f)
            if not isinstance(ids, list) or not ids or not all(type(t) is int for t in ids):
                raise InputError(path, f"expected {what} (a non-empty list of integers)", line=row.get("_line"),
                                 field=f)


def _strip_private(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed to ``path`` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(_strip_private(rec), ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The file's text; a missing file, one that is not a regular file (a FIFO, a device) or a byte that
    is not UTF-8 is an InputError naming file and line."""
    require_regular_file(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid UTF-8 (byte {data[exc.start]:#04x})",
                         line=data.count(b"\n", 0, exc.start) + 1) from None


def read_json(path: str | os.PathLike) -> Any:
    return loads(read_text(path), path)
