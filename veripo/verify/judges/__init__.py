"""Consistency judges behind one interface: ``make_judge(config["verifier"]["judge"])``.

backend ``rule`` (the rule judge, no model), ``hf`` (any ``from_pretrained`` causal LM), ``vllm`` (the
same on vLLM, GPU only), ``http`` (an OpenAI-compatible chat-completions endpoint). Switching is a
config change. Backends are imported only when chosen, so the rule judge needs neither torch nor vllm.
"""
from __future__ import annotations

from veripo.verify.judges.base import Judge, JudgeError
from veripo.verify.judges.verdicts import CONSISTENT, INCONSISTENT, UNKNOWN, UNPARSABLE, VERDICTS, parse_reply

BACKENDS = ("rule", "hf", "vllm", "http")
_LLM_KEYS = ("prompt", "batch_size", "max_new_tokens")
REQUIRED = {
    "rule": (),
    "hf": ("model",) + _LLM_KEYS,
    "vllm": ("model",) + _LLM_KEYS,
    "http": ("url", "timeout_s", "retries", "backoff_s") + _LLM_KEYS,
}
_WHAT = {"model": "a from_pretrained path or hub id", "url": "the server's base URL, e.g. http://127.0.0.1:8000",
         "prompt": "a template with {question}, {reasoning} and {answer}"}

__all__ = ["BACKENDS", "CONSISTENT", "INCONSISTENT", "UNKNOWN", "UNPARSABLE", "VERDICTS", "Judge", "JudgeError",
           "check_spec", "make_judge", "parse_reply"]


def check_spec(spec: dict) -> None:
    """Raise ValueError naming the config key a backend needs and lacks."""
    backend = spec.get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"unknown judge backend {backend!r} (config key 'verifier.judge.backend'); "
                         f"expected one of {', '.join(BACKENDS)}")
    for key in REQUIRED[backend]:
        if spec.get(key) in (None, ""):
            what = f" ({_WHAT[key]})" if key in _WHAT else ""
            raise ValueError(f"config key 'verifier.judge.{key}' is required for backend {backend!r}{what}")
    if backend != "rule":
        for placeholder in ("{reasoning}", "{answer}"):
            if placeholder not in spec["prompt"]:
                raise ValueError(f"config key 'verifier.judge.prompt' lacks {placeholder}")


def make_judge(spec: dict) -> Judge:
    check_spec(spec)
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
