"""Which engine generates: our HF code or vLLM. ``auto`` (``eval.backend``, ``grpo.rollout_backend``)
is vLLM when it imports in this Python and a CUDA GPU is present, else HF: vLLM's speed matters on GPUs,
and on CPU our code is the reference the vLLM tests compare with."""
from __future__ import annotations


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """"hf" or "vllm" for a configured backend name (one of hf, vllm, auto by the schema); auto = vllm
    when importable on a CUDA machine."""
    if name != "auto":
        return name
    import torch

    return "vllm" if torch.cuda.is_available() and vllm_available() else "hf"
