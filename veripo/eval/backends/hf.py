"""Generation backends for evaluation: batched HF generation (any machine) or vLLM (CUDA GPUs).

``eval.backend: auto`` picks vLLM when it imports and a CUDA GPU is present, else HF. Both answer a
list of questions with one ``Generation`` each, from the same prepared inputs (veripo/eval/inputs.py).
"""
from __future__ import annotations

from veripo.eval.backends.base import Generation  # noqa: F401  (what every backend returns)
from veripo.model.backend import resolve_backend, vllm_available  # noqa: F401  (shared with GRPO's rollouts)


class HFBackend:
    """Greedy (or sampled) generation with transformers, ``batch_size`` questions per forward."""

    name = "hf"

    def __init__(self, model_path: str, settings: dict, video_root: str, seed: int = 0):
        import torch

        from veripo.model import policy

        self.settings, self.video_root = settings, video_root
        self.model, self.processor = policy.load_policy(model_path, settings["dtype"],
                                                        settings.get("attn_implementation"))
        policy.configure_processor(self.processor, settings["media"])
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device}

    def generate(self, questions: list[dict]) -> list[Generation]:
        from veripo.eval import inputs as eval_inputs

        return self.generate_inputs([eval_inputs.prepare(self.processor, q, self.video_root, self.settings["media"],
                                                         self.settings["prompts"]) for q in questions])

    def generate_inputs(self, inputs: list) -> list[Generation]:
        """One Generation per prepared input (``EvalInput``): a benchmark question's, or a prompt the
        ``veripo infer`` command prepared alike."""
        from veripo.model import batch_generate
        from veripo.model import policy

        gen = self.settings["generation"]
        prompts = [policy.encode(self.processor, inp.text, inp.video, inp.image) for inp in inputs]
        ro = batch_generate.generate(self.model, prompts, gen["max_new_tokens"], gen["temperature"], gen["top_p"],
                                     gen["repetition_penalty"], generator=self.generator,
                                     pad_id=self.processor.tokenizer.pad_token_id)
        texts = policy.decode(self.processor, ro)
        return [Generation(text, int(mask.sum()), bool(truncated))
                for text, mask, truncated in zip(texts, ro.mask, ro.truncated)]


def load_backend(name: str, model_path: str, settings: dict, video_root: str, seed: int = 0):
    """The backend object for a name ``resolve_backend`` gave ("hf" or "vllm"); ``seed`` seeds its sampler."""
    if name == "vllm":
        from veripo.eval.backends.vllm import VLLMBackend

        return VLLMBackend(model_path, settings, video_root, seed)
    return HFBackend(model_path, settings, video_root, seed)
