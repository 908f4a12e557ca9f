"""The optimiser engine: DeepSpeed ZeRO (any world size, CPU or GPU) or plain torch AdamW.

Gradient accumulation is ours (a step covers however many micro-batches the data gives), so
DeepSpeed runs with ``managed_gradient_accumulation: false``: ``backward`` only accumulates locally,
``step`` reduces across ranks and updates.

Every forward whose loss is backpropagated goes through ``forward`` (the DeepSpeed engine's forward,
as DeepSpeed's own training loops do), never the bare module: the engine's forward closes the previous
micro-batch's backward. Under ZeRO-3 that is what advances the micro-step counter; without it every
backward of a step overwrote the gradient partition instead of adding to it, and a step kept only its
last micro-batch (tests/test_engine_equivalence.py). ``backward`` refuses a loss that did not come
through ``forward``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]  # the repository: zero_config paths are relative to it


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``. A host tensor goes to a GPU through pinned memory without blocking: a plain
    copy from pageable memory waits until the GPU has run every kernel queued before it (a host sync)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def adamw_kernel(device: torch.device) -> dict:
    """torch AdamW's fastest implementation for parameters on ``device``: fused on CUDA (one kernel over
    every tensor of a step, no host reads of the step counters), foreach elsewhere (one op per kind over
    all tensors instead of a Python loop; on CPU its steps equal the loop's bit for bit)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def job_zero_config(engine: str, zero_config: str, plan) -> tuple[str | None, dict | None]:
    """The DeepSpeed JSON a training job runs with, and settings.json's record of it: ``zero_config``
    itself, or for ``auto`` the memory plan's choice (``memory_plan.choose_zero_config``) on the
    smallest GPU of the job's ranks; ``plan(gpu_bytes)``: the job's phases under a given engine (on
    GPUs of that memory: a colocated vLLM engine takes a share of it). Every rank gets the same answer.
    (None, None) for the torch engine."""
    from veripo.train import distributed, memory_plan

    if engine != "deepspeed":
        return None, None
    if zero_config != memory_plan.AUTO:
        return zero_config, {"zero_config": zero_config, "stage": memory_plan.zero_from_json(zero_config).stage,
                             "chosen_by": "train.zero_config"}
    gpu = None
    if torch.cuda.is_available():
        gpu = min(distributed.gather(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory))
    choice = memory_plan.choose_zero_config(plan(gpu), gpu)
    return choice.zero_config, choice.record()


class TrainEngine:
    def __init__(self, model, lr: float, weight_decay: float, grad_clip: float, kind: str = "torch",
                 zero_config: str | None = None, dtype: str = "float32", gradient_checkpointing: bool = False):
        self.kind = kind
        self.grad_clip = grad_clip
        self._forward_pending = False
        if gradient_checkpointing:
            # non-reentrant: works with frozen inputs (a frozen vision tower, frozen embeddings) and ZeRO-3 hooks
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = [p for p in model.parameters() if p.requires_grad]
        if kind == "torch":
            from veripo.train import distributed

            if distributed.active():
                # plain AdamW reduces nothing: each rank would train on its own shard alone
                raise ValueError("train.engine 'torch' runs in one process; use 'deepspeed' with several ranks")
            self.module = model.to(distributed.device())
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay,
                                               **adamw_kernel(params[0].device if params else torch.device("cpu")))
            self.ds = None
        elif kind == "deepspeed":
            import deepspeed

            from veripo.train import distributed

            if not torch.distributed.is_initialized():
                distributed.init("deepspeed")  # a group of one when not started by torchrun
            cfg = json.loads(Path(zero_config if os.path.isabs(zero_config) else ROOT / zero_config).read_text())
            offload = (cfg.get("zero_optimization", {}).get("offload_optimizer") or {}).get("device", "none")
            # torch's AdamW on the fp32 master partitions (DeepSpeed's FusedAdam would be compiled with nvcc)
            kernel = adamw_kernel(torch.device("cpu") if offload == "cpu" else distributed.device())
            cfg.update({
                "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                "managed_gradient_accumulation": False, "gradient_clipping": grad_clip,
                "optimizer": {"type": "AdamW", "params": {"lr": lr, "weight_decay": weight_decay,
                                                          "torch_adam": True, **kernel}},
                "bf16": {"enabled": dtype == "bfloat16"}, "fp16": {"enabled": dtype == "float16"},
            })
            self.ds, self.optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=params, config=cfg)
            self.module = self.ds.module
            # every forward calls the same modules on every rank (read by veripo.model.policy.lockstep)
            self.module.veripo_lockstep = True
        else:
            raise ValueError(f"unknown engine {kind!r} (torch | deepspeed)")

    @classmethod
    def for_run(cls, model, cfg, run) -> "TrainEngine":
        """The engine a training loop's config and RunContext ask for."""
        return cls(model, cfg.lr, cfg.weight_decay, cfg.grad_clip, run.engine, run.zero_config, run.dtype,
                   run.gradient_checkpointing)

    @property
    def zero_stage(self) -> int:
        return self.ds.zero_optimization_stage() if self.ds is not None else 0

    def forward(self, *args, **kwargs):
        """The model's root forward, for a loss that ``backward`` will take (one per backward)."""
        self._forward_pending = True
        return self.module(*args, **kwargs) if self.ds is None else self.ds(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        if not self._forward_pending:
            raise RuntimeError("TrainEngine.backward without a TrainEngine.forward since the last backward: "
                               "DeepSpeed would not count the micro-batch (ZeRO-3 overwrites its gradient)")
        self._forward_pending = False
        if self.ds is None:
            loss.backward()
        else:
            self.ds.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        if self.ds is None:
            params = [p for p in self.module.parameters() if p.requires_grad]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return norm
        self.ds.step()
        norm = self.ds.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def zero_grad(self) -> None:
        if self.ds is None:
            self.optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def full_parameters(self):
        """Every rank holds the whole model inside (ZeRO-3 partitions it otherwise): for reading or saving
        the weights. Forwards inside still go through ZeRO-3's module hooks (see ``generation_parameters``)."""
        if self.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                yield
        else:
            yield

    @contextlib.contextmanager
    def generation_parameters(self):
        """The whole model on every rank, gathered once, with ZeRO-3's module hooks taken off until the
        block ends: for sampling and no-grad scoring. With the hooks on, every module call inside would
        release and re-gather its parameters, a collective per call; ranks decode different numbers of
        tokens, so those collectives would not match across ranks."""
        if self.zero_stage != 3:
            yield
            return
        import deepspeed

        offload = self.ds.optimizer.parameter_offload
        module = offload.module
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            # The module hooks gather and release; the root's start-of-forward hook checks, with a
            # broadcast, that every rank is at the same step. Both are collectives per call: all come off.
            start_of_forward = module._forward_pre_hooks[offload.fwd_pre_hook.id]
            for hook in [*offload.forward_hooks, *offload.backward_hooks, offload.fwd_pre_hook]:
                hook.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
            try:
                yield
            finally:
                offload.fwd_pre_hook = module.register_forward_pre_hook(start_of_forward)
                offload._register_deepspeed_module(module)

    def save_state(self, directory: Path) -> None:
        if self.ds is None:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()},
                       directory / "engine.pt")
        else:
            self.ds.save_checkpoint(str(directory), tag="engine", save_latest=False)

    def load_state(self, directory: Path) -> None:
        if self.ds is None:
            blob = torch.load(directory / "engine.pt", weights_only=True)
            self.module.load_state_dict(blob["model"])
            self.optimizer.load_state_dict(blob["optimizer"])
        else:
            self.ds.load_checkpoint(str(directory), tag="engine")
