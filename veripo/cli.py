"""Plumbing shared by the scripts/ CLIs: JSON options, logging, progress bars, clean error exits."""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys

import click

from veripo.config import ConfigError
from veripo.errors import DiskFullError, InputError, JudgeError, RolloutMismatchError


class JsonParam(click.ParamType):
    name = "json"

    def convert(self, value, param, ctx):
        if isinstance(value, (dict, list)):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)


JSON = JsonParam()


# C0/C1 control characters but newline and tab (ANSI escape sequences start with ESC, \x1b) and the
# Unicode bidirectional overrides, which reorder what a terminal shows.
_UNSAFE_FOR_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` with every character a terminal would act on instead of print (an ANSI escape sequence's
    ESC, a carriage return, a bidi override) written as its escape, e.g. ``\x1b``: text from data is
    shown, never obeyed."""
    return _UNSAFE_FOR_TERMINAL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "urllib3", "DeepSpeed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(*args, **kwargs):
    """A tqdm bar on stderr (the rule's log), refreshed at most every 2 s so logs stay readable."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("dynamic_ncols", False)
    return tqdm(*args, **kwargs)


def summary(artifact: str, text: str) -> None:
    """The job's one-line result, named by its main artifact: on stdout, which Snakemake's own output
    shows under the job (the job's stderr goes to its log), and in the log. Rank 0 only."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return
    line = f"{artifact}: {text}"
    click.echo(line)
    click.echo(line, err=True)


def main_guard(fn):
    """Bad input, a bad config value, a judge that cannot run, GRPO rollouts that do not match the
    trainer or a disk that fills up while writing exit with status 2 and a one-line message (file/line/field,
    config key, the judge's complaint, the round and its log-prob gap, the path and the space left) instead
    of a traceback; the message is terminal_safe."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ConfigError, JudgeError, RolloutMismatchError, DiskFullError) as exc:
            # ConfigError lists several keys on indented lines; a rule's log keeps one line per error.
            click.echo("error: " + terminal_safe(" ".join(part.strip() for part in str(exc).splitlines())), err=True)
            sys.exit(2)

    return wrapper


def set_threads() -> None:
    import torch

    n = int(os.environ.get("VERIPO_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
