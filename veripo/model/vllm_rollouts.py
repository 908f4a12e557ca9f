"""GRPO rollouts through a colocated vLLM engine (``grpo.rollout_backend: vllm``).

The engine samples each query's G rollouts with what our HF sampler uses: the same chat prompt, the same
sampled frames and pixel budget (our decoder samples them; vLLM must not resample), the four vision
placeholder tokens banned, the same temperature, top-p and length limit. Rewards, advantages and every
log-prob of the ratio are computed by the training forward, as for HF rollouts, so the loss never mixes
two implementations' numerics. vLLM's own log-probs of the sampled ids come back too (its "processed"
ones: the distribution it sampled from) and are only compared with the trainer's: GRPO logs the gap each
round and stops above ``grpo.vllm.max_logprob_gap`` (veripo/train/grpo.py).

The engine lives in the training process and is started once per job from the entering checkpoint.
Before each round's sampling it gets the trainer's current weights in memory (``sync``: vLLM's
layerwise reload, which redoes its CPU weight packing), and both of its caches are reset: a stale prefix
cache would answer with the old weights. Under ZeRO-3 the caller gathers the weights first
(``TrainEngine.generation_parameters``). With several ranks every rank runs its own engine on its GPU
and samples its own shard (``distributed_executor_backend: external_launcher`` in ``grpo.vllm`` for
torchrun jobs; not testable on one CPU).

On CUDA the engine sleeps between rounds (vLLM's sleep mode, on unless ``grpo.vllm`` sets
``enable_sleep_mode: false``): after a round's sampling ``sleep(level=1)`` moves its weights to host
memory and frees its KV cache, so scoring and the update have the card; before the next sync its weights
come back (``wake_up``), the new ones are loaded, then its KV cache is allocated again. It is built
asleep too, before the trainer's engine. Sleep mode needs CUDA (vLLM refuses it on CPU): on CPU the
engine stays awake. Its time and the memory it leaves while asleep are not measured here (no GPU):
speed/memory_plan.py counts the awake share and an allowance for the asleep one.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from veripo.media import decode as video
from veripo.model import policy, vllm_memory

BANNED_LOGIT_BIAS = -100.0  # vLLM clamps logit_bias to [-100, 100]; -100 is never sampled in practice


class WeightSync:
    """vLLM worker extension (named by its import path in ``worker_extension_cls``): in-memory weight
    loading through the worker's layerwise reload."""

    def veripo_reload(self, weights):
        self.reload_weights(weights_iterator=weights)
        return True


def request(text: str, clip: video.DecodedVideo | None, image) -> dict:
    """One vLLM prompt: the chat text, the frames we sampled with their metadata, or the image."""
    data: dict = {}
    kwargs: dict = {}
    if clip is not None:
        # the sampled frames' metadata as plain data (what vLLM's video items carry)
        meta = {"fps": clip.native_fps, "duration": clip.total_frames / clip.native_fps,
                "total_num_frames": clip.total_frames, "frames_indices": list(clip.indices), "video_backend": "pyav"}
        data["video"] = [(clip.frames, meta)]
        # the temporal position step of Qwen2.5-VL derives from the sampled fps
        kwargs = {"fps": len(meta["frames_indices"]) / meta["duration"], "do_sample_frames": False}
    if image is not None:
        data["image"] = image
    out: dict = {"prompt": text}
    if data:
        out["multi_modal_data"] = data
    if kwargs:
        out["mm_processor_kwargs"] = kwargs
    return out


def engine_kwargs(model_path: str, dtype: str, media_cfg: dict, settings: dict, seed: int,
                  cuda: bool = False) -> dict:
    """The ``vllm.LLM`` arguments for a policy checkpoint (``settings``: the engine arguments of the
    config's vllm section). The returned log-probs are always vLLM's "processed" ones, those of the
    distribution it sampled from (temperature, banned tokens, top-p applied; the default, "raw", is the
    model's softmax at temperature 1): the log-prob gap compares them with the trainer's. On ``cuda``
    sleep mode is on unless ``settings`` says otherwise."""
    return {"model": model_path, "dtype": dtype, "seed": seed, "limit_mm_per_prompt": {"video": 1, "image": 1},
            "mm_processor_kwargs": {"min_pixels": media_cfg["min_pixels"], "max_pixels": media_cfg["max_pixels"],
                                    "cap_pixels_per_frame": video.CAP_PIXELS_PER_FRAME},
            "worker_extension_cls": f"{__name__}.WeightSync", **({"enable_sleep_mode": True} if cuda else {}),
            **settings, "logprobs_mode": "processed_logprobs"}


def banned_bias(model_config) -> dict:
    """logit_bias banning the vision placeholders, as ``policy.suppressed_token_ids`` does for HF."""
    return {t: BANNED_LOGIT_BIAS for t in policy.suppressed_token_ids(SimpleNamespace(config=model_config))}


class VLLMRollouts:
    """A colocated vLLM engine that samples G rollouts per query for GRPO."""

    def __init__(self, model_path: str, dtype: str, media_cfg: dict, settings: dict, seed: int):
        import os

        # the engine in this process: the weights travel to it in memory (a separate engine-core
        # process would need them pickled, which tensors' memoryviews refuse)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # the engine's KV cache from the job's memory, beside the trainer's weights, gradients and Adam moments
        settings = vllm_memory.size_engine(settings, model_path, "grpo.vllm", weight_copies=5)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError(f"grpo.rollout_backend is 'vllm' but vLLM does not import ({exc}): run the job "
                               "in the vLLM env (envs/vllm.yaml, or config key vllm_python), or use 'hf'") from None
        from transformers import AutoConfig

        self.seed = seed
        kwargs = engine_kwargs(model_path, dtype, media_cfg, dict(settings), seed, torch.cuda.is_available())
        self.llm = LLM(**kwargs)
        self.bias = banned_bias(AutoConfig.from_pretrained(model_path))
        self.sleeps = bool(kwargs.get("enable_sleep_mode"))
        self.asleep = False
        self._sleep()  # the trainer's engine is built next: leave it the card

    def _sleep(self) -> None:
        if self.sleeps:
            # level 1 keeps a host copy of the weights; level 2 would drop them (the sync reloads every
            # parameter anyway), but the layerwise reload into weights woken from level 2 is untried
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self, tags: list[str] | None = None) -> None:
        if self.asleep:
            self.llm.wake_up(tags)  # empties torch's cache first: the trainer's freed blocks come back
            self.asleep = tags is not None and "kv_cache" not in tags

    def sync(self, model) -> None:
        """Load ``model``'s current weights into the engine and drop everything computed with the old ones
        (woken weights first, its KV cache only once they are loaded: less memory at once)."""
        self._wake(["weights"])
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        self.llm.collective_rpc("veripo_reload", args=(weights,))
        self._wake()
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()

    def sample(self, items: list[tuple[str, video.DecodedVideo | None, object]], n: int, temperature: float,
               top_p: float, max_new_tokens: int, seeds: list[int], pad_id: int) -> list[policy.Rollouts]:
        """G=``n`` rollouts for each (chat text, clip, image): Rollouts as ``policy.sample`` returns them
        (ids ending with the EOS vLLM sampled, or truncated at ``max_new_tokens``), with vLLM's log-prob
        of each sampled id (0 after the end): the loss never uses them, the log-prob gap does."""
        from vllm import SamplingParams

        # Greedy (our temperature <= 1e-5) is one completion, repeated: vLLM refuses n > 1 without
        # sampling, and raises any temperature in (0, 0.01) to 0.01
        greedy = temperature <= 1e-5
        params = [SamplingParams(n=1 if greedy else n, temperature=0.0 if greedy else temperature, top_p=top_p,
                                 max_tokens=max_new_tokens, seed=s, logit_bias=self.bias, logprobs=0) for s in seeds]
        self._wake()
        outs = self.llm.generate([request(*it) for it in items], sampling_params=params, use_tqdm=False)
        self._sleep()  # until the next round's sync: scoring and the update get its memory
        return [_rollouts(out.outputs * n if greedy else out.outputs, pad_id) for out in outs]


def _rollouts(completions, pad_id: int) -> policy.Rollouts:
    seqs = [list(c.token_ids) for c in completions]
    width = max(1, max(len(s) for s in seqs))
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    logprobs = torch.zeros(len(seqs), width)
    for i, (s, c) in enumerate(zip(seqs, completions)):
        tokens[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
        # logprobs=0 asks for the sampled id's own entry at each position
        logprobs[i, :len(s)] = torch.tensor([pos[t].logprob for t, pos in zip(s, c.logprobs)])
    truncated = torch.tensor([c.finish_reason == "length" for c in completions])
    return policy.Rollouts(tokens, mask, logprobs, truncated)

