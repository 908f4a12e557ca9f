"""The exception types a CLI prints as one line (no traceback): bad input, and a judge that cannot run."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input data or config; the message names the file, line and field."""

    def __init__(self, path: object, message: str, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field


class JudgeError(RuntimeError):
    """A consistency judge that cannot run (unreachable endpoint, missing package, bad reply envelope)."""
