"""The LLM judge through vLLM (CUDA GPUs only: vLLM has no CPU wheels).

``vllm.LLM(model=..., **engine_args)`` loads the judge once; ``llm.generate(prompts, SamplingParams(
temperature=0, max_tokens=max_new_tokens))`` answers each batch greedily (vLLM schedules a batch
itself), and each ``RequestOutput.outputs[0].text`` is the reply. The tests run this code against a
mock ``vllm`` module placed in ``sys.modules``: the mock stands in for the GPU-only engine and checks
the calls, not vLLM itself.
"""
from __future__ import annotations

from veripo.verify.judges.base import JudgeError, LLMJudge, chat_text, report


class VLLMJudge(LLMJudge):
    def __init__(self, spec: dict):
        super().__init__(spec)
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise JudgeError("verifier.judge.backend 'vllm' needs the vllm package, which runs on CUDA GPUs only "
                             "(envs/eval.yaml installs it); use backend 'hf' elsewhere") from exc
        self.name = f"vllm:{spec['model']}"
        self.llm = LLM(model=spec["model"], **(spec.get("engine_args") or {}))
        self.tokenizer = self.llm.get_tokenizer()
        self.params = SamplingParams(temperature=0.0, max_tokens=int(spec["max_new_tokens"]))

    def complete(self, prompts: list[str]) -> list[str]:
        texts = [chat_text(self.tokenizer, p) for p in prompts]
        replies: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            outputs = self.llm.generate(texts[start:start + self.batch_size], self.params, use_tqdm=False)
            replies += [o.outputs[0].text.strip() for o in outputs]
            report(self.name, len(replies), len(texts))
        return replies
