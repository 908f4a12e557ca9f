"""An LLM judge on any ``from_pretrained`` causal LM (a local directory or a hub id).

Greedy decoding, prompts batched with left padding (so every reply starts at the same column), the
model's chat template when its tokenizer has one. Prompts are sorted by length before batching, which
keeps padding small; replies come back in the caller's order. GPU when one is visible, else CPU.
"""
from __future__ import annotations

from veripo.verify.judges.base import JudgeError, LLMJudge, chat_text


class HFJudge(LLMJudge):
    def __init__(self, spec: dict):
        super().__init__(spec)
        from veripo.media.torchvision_cpu import apply

        apply()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        path = spec["model"]
        self.name = f"hf:{path}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        except (OSError, ValueError) as exc:
            raise JudgeError(f"verifier.judge.model {path!r}: cannot load a causal LM ({exc})") from exc
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        # A fresh generation config: the checkpoint's sampling defaults (temperature, top_p) must not apply.
        self.generation = GenerationConfig(do_sample=False, max_new_tokens=int(spec["max_new_tokens"]),
                                           pad_token_id=self.tokenizer.pad_token_id,
                                           eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id)

    def complete(self, prompts: list[str]) -> list[str]:
        import torch

        texts = [chat_text(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        replies: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            # the chat template already holds the special tokens
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(**enc, generation_config=self.generation)
            new = out[:, enc["input_ids"].shape[1]:]  # (B, new tokens)
            for i, row in zip(idx, new):
                replies[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
            self.report(min(start + self.batch_size, len(order)), len(order))
        return replies
