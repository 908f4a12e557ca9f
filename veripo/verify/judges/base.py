"""The judge interface: ``judge(texts, questions=None, answer_types=None) -> [verdict dict]``, one verdict
per rollout text. ``questions`` and ``answer_types`` (``multiple_choice`` / ``numeric`` / ``math``), when
given, run parallel to ``texts``; the rule judge needs the type to know which conclusions count, LLM judges
read the question and ignore the type.

A verdict dict holds ``verdict`` (CONSISTENT / INCONSISTENT / UNKNOWN / UNPARSABLE), ``judge`` (the
backend and model) and, for LLM judges, ``raw`` (the reply, None when the LLM was not asked). A rollout
without a ``<think>`` or an ``<answer>`` has nothing to compare: UNKNOWN, without asking any LLM.
"""
from __future__ import annotations

import logging

from veripo.answers import extract_answer, extract_think
from veripo.errors import JudgeError  # noqa: F401  (judges raise it; defined with the CLI's error types)
from veripo.verify.judges.verdicts import UNKNOWN, parse_reply, render_prompt

log = logging.getLogger(__name__)


class Judge:
    name = "judge"
    # A tqdm-like factory (veripo.cli.progress) for a bar over the replies of an LLM judge; None: log lines.
    progress = None

    def judge(self, texts: list[str], questions: list[str] | None = None,
              answer_types: list[str] | None = None) -> list[dict]:
        raise NotImplementedError

    def __call__(self, texts, questions=None, answer_types=None):
        # A single string gives a single verdict: scripts/eval_score.py judges one response at a time.
        if isinstance(texts, str):
            return self.judge([texts], None if questions is None else [questions],
                              None if answer_types is None else [answer_types])[0]
        return self.judge(list(texts), questions, answer_types)


def parallel(texts: list[str], column: list | None, name: str, missing=None) -> list:
    """``column`` checked to hold one entry per text; ``missing`` for each text when it is not given."""
    if column is None:
        return [missing] * len(texts)
    if len(column) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(column)} {name}")
    return list(column)


class LLMJudge(Judge):
    """Prompt rendering and reply parsing; backends implement ``complete(prompts) -> replies``.

    ``prompts`` are the rendered user messages, all of them: each backend applies its model's chat
    template and works through them ``batch_size`` at a time, in its own way.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.template = spec["prompt"]
        self.batch_size = int(spec["batch_size"])
        self.yes_is = spec.get("yes_is")
        self._bar = None

    def complete(self, prompts: list[str]) -> list[str]:
        raise NotImplementedError

    def judge(self, texts: list[str], questions: list[str] | None = None,
              answer_types: list[str] | None = None) -> list[dict]:
        questions = parallel(texts, questions, "questions", missing="")
        parallel(texts, answer_types, "answer types")  # the prompt carries the question, not the type
        out: list[dict | None] = [None] * len(texts)
        asked, prompts = [], []
        for i, (text, question) in enumerate(zip(texts, questions)):
            reasoning, answer = extract_think(text), extract_answer(text)
            if not reasoning or answer is None:
                out[i] = {"verdict": UNKNOWN, "judge": self.name, "raw": None}
                continue
            asked.append(i)
            prompts.append(render_prompt(self.template, question or "", reasoning, answer))
        self._bar = self.progress(total=len(prompts), desc=f"judge {self.name}") if self.progress and prompts else None
        try:
            replies = self.complete(prompts) if prompts else []
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        if len(replies) != len(prompts):
            raise JudgeError(f"judge {self.name} returned {len(replies)} replies for {len(prompts)} prompts")
        for i, reply in zip(asked, replies):
            out[i] = {"verdict": parse_reply(reply, self.yes_is), "judge": self.name, "raw": reply}
        return out

    def report(self, done: int, total: int) -> None:
        """``done`` of ``total`` replies are in: the bar moves, or a log line without one."""
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        else:
            log.info("judge %s: %d/%d replies", self.name, done, total)


def chat_text(tokenizer, prompt: str) -> str:
    """The prompt as the model's chat turn when its tokenizer has a chat template, else as it is."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt
