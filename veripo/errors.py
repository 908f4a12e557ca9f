"""The exception types a CLI prints as one line (no traceback): bad input, a judge that cannot run,
rollouts that were not sampled from the policy being trained, and a disk that fills up while writing."""
from __future__ import annotations

import errno


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


class RolloutMismatchError(RuntimeError):
    """GRPO rollouts whose sampler's log-probs differ from the trainer's by more than the configured bound
    (grpo.vllm.max_logprob_gap); the message names the stage, iteration and round, the gap and the bound."""


class DiskFullError(OSError):
    """A write that ran out of disk (ENOSPC, or a C++ stream's bare "basic_ios::clear" from torch.save);
    the message names the path being written and the space left on its filesystem."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:  # the message alone: OSError's own str prefixes "[Errno 28] "
        return self.strerror
