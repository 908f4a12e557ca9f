"""Consistency judges behind one interface: ``make_judge(config["verifier"]["judge"])``.

backend ``rule`` (the rule judge, no model), ``hf`` (any ``from_pretrained`` causal LM), ``vllm`` (the
same on vLLM, GPU only), ``http`` (an OpenAI-compatible chat-completions endpoint). Switching is a
config change. Backends are imported only when chosen, so the rule judge needs neither torch nor vllm.
The backend name and what each backend needs (model, url, a prompt with {reasoning} and {answer}) are
checked once, by the config schema, before any job starts.
"""
from __future__ import annotations

from veripo.verify.judges.base import Judge, JudgeError
from veripo.verify.judges.verdicts import CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE, VERDICTS, parse_reply

__all__ = ["CONSISTENT", "INCONSISTENT", "UNKNOWN", "UNPARSABLE", "VERDICTS", "Judge", "JudgeError", "make_judge",
           "parse_reply"]


def make_judge(spec: dict) -> Judge:
    """The judge of a schema-validated ``verifier.judge`` section."""
    backend = spec["backend"]
    if backend == "rule":
        from veripo.verify.judges.rule import RuleJudge

        return RuleJudge()
    if backend == "hf":
        from veripo.verify.judges.hf import HFJudge

        return HFJudge(spec)
    if backend == "vllm":
        from veripo.verify.judges.vllm_engine import VLLMJudge

        return VLLMJudge(spec)
    from veripo.verify.judges.openai_http import HTTPJudge

    return HTTPJudge(spec)
