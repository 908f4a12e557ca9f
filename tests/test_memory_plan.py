"""The memory plan (veripo/train/memory_plan.py; speed/memory_plan.py is its command line): its activation
formulas against what a small Qwen2.5-VL really keeps on CPU, its shapes and counts against transformers,
its verdicts on the 7B config, and the ZeRO stage ``train.zero_config: auto`` picks.

Tolerance of the measured comparisons: 3%. The formulas count exactly the tensors transformers'
Qwen2.5-VL decoder layer and vision block save (they agree to the byte today); 3% lets the few-bytes-
per-token terms (logsumexp, rsqrt: under 0.3%) drift with a transformers upgrade, while a missed or
extra hidden-sized tensor (2h bytes = 4% of a layer at this shape) fails.
"""
import importlib.util
import sys
import weakref

import pytest
import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import ROOT
from veripo.run_settings import merge_layers
from veripo.train import memory_plan as mp

TOLERANCE = 0.03
SPEC = importlib.util.spec_from_file_location("memory_plan_cli", ROOT / "speed" / "memory_plan.py")
cli = sys.modules["memory_plan_cli"] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cli)

# Small, but with the 7B's structure: GQA (2 query heads per KV head), SwiGLU, untied LM head.
TEXT = dict(vocab_size=512, hidden_size=256, intermediate_size=704, num_attention_heads=4, num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
            tie_word_embeddings=False)
VISION = dict(hidden_size=64, intermediate_size=160, num_heads=4, out_hidden_size=256, window_size=112)
BATCH, LENGTH, PAD = 2, 128, 8


def small_model(layers: int = 2, depth: int = 1, attn: str = "sdpa", dtype=torch.bfloat16):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(text_config={**TEXT, "num_hidden_layers": layers},
                           vision_config={**VISION, "depth": depth, "fullatt_block_indexes": [depth - 1]},
                           tie_word_embeddings=False)
    cfg._attn_implementation = attn
    cfg.text_config._attn_implementation = attn
    cfg.vision_config._attn_implementation = attn
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(cfg).to(dtype), cfg


def shape_of(cfg, tmp_path) -> "mp.ModelShape":
    cfg.save_pretrained(tmp_path)
    return mp.model_shape({"base_model": str(tmp_path)})


def batch():
    """Token ids and a padding mask (one row shorter by PAD), as every batched forward here has."""
    ids = torch.randint(0, 400, (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    mask[0, :PAD] = 0
    return ids, mask


def saved_bytes(model, run) -> int:
    """Bytes of the distinct storages autograd saves while ``run()`` runs, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def text_forward_saved(layers, attn="sdpa", dtype=torch.bfloat16, checkpointing=False):
    model, cfg = small_model(layers, attn=attn, dtype=dtype)
    model.train()
    if checkpointing:  # as veripo.train.engine.TrainEngine enables it
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids, mask = batch()
    return saved_bytes(model, lambda: model.model.language_model(input_ids=ids, attention_mask=mask,
                                                                  use_cache=False)), cfg


def close(estimate, measured):
    return abs(estimate - measured) <= TOLERANCE * measured


@pytest.mark.parametrize("attn,dtype", [("sdpa", torch.bfloat16), ("eager", torch.bfloat16),
                                        ("sdpa", torch.float32)])
def test_saved_activations_of_a_forward_match_the_estimate(attn, dtype, tmp_path):
    measured, cfg = text_forward_saved(2, attn, dtype)
    s = shape_of(cfg, tmp_path)
    b = dtype.itemsize
    per_token = s.layers * mp.layer_saved_bytes(s, b, attn, LENGTH) + mp.outside_layers_saved_bytes(s, b)
    estimate = BATCH * LENGTH * per_token
    assert close(estimate, measured), f"estimate {estimate} vs measured {measured} bytes"


def test_checkpointing_keeps_one_hidden_state_per_layer(tmp_path):
    per_layer = {}
    for checkpointing in (False, True):
        two, cfg = text_forward_saved(2, checkpointing=checkpointing)
        four, _ = text_forward_saved(4, checkpointing=checkpointing)
        per_layer[checkpointing] = (four - two) / 2 / (BATCH * LENGTH)
    s = shape_of(cfg, tmp_path)
    assert close(mp.checkpointed_layer_bytes(s, 2), per_layer[True])
    assert close(mp.layer_saved_bytes(s, 2, "sdpa", LENGTH), per_layer[False])
    assert per_layer[True] * 10 < per_layer[False]


def test_vision_block_saved_activations_match_the_estimate(tmp_path):
    grid = torch.tensor([[2, 16, 16]])  # one temporal patch of 16 x 16 patches
    pixels = torch.randn(512, 3 * 2 * 14 * 14, dtype=torch.bfloat16)
    measured = {}
    for depth in (2, 4):
        model, cfg = small_model(depth=depth)
        model.train()
        measured[depth] = saved_bytes(model, lambda: model.model.visual(pixels, grid_thw=grid))
    per_patch = (measured[4] - measured[2]) / 2 / 512
    assert close(mp.vision_block_saved_bytes(shape_of(cfg, tmp_path), 2), per_patch)


class PeakLiveBytes(TorchDispatchMode):
    """The most bytes of tensor storage alive at once among those the ops under it make."""

    def __init__(self, ignore):
        super().__init__()
        self.alive, self.live, self.peak = {p.untyped_storage().data_ptr() for p in ignore}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.alive:
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                self.alive.add(key)
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._freed, key, size)
        return out

    def _freed(self, key, size):
        self.alive.discard(key)
        self.live -= size


def test_forward_without_grad_peaks_as_estimated(tmp_path):
    model, cfg = small_model(2)
    model.eval()
    ids, mask = batch()
    with torch.no_grad():
        embeds = model.model.language_model.embed_tokens(ids)
        with PeakLiveBytes(list(model.parameters()) + list(model.buffers()) + [embeds]) as peak:
            model.model.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
    estimate = BATCH * LENGTH * mp.layer_nograd_bytes(shape_of(cfg, tmp_path), 2, "sdpa", LENGTH)
    assert close(estimate, peak.peak), f"estimate {estimate} vs measured peak {peak.peak} bytes"


def test_parameter_counts_match_the_model(tmp_path):
    model, cfg = small_model(2, depth=2)
    s = shape_of(cfg, tmp_path)
    assert mp.text_params(s) + mp.vision_params(s) == sum(p.numel() for p in model.parameters())
    assert mp.vision_params(s) == sum(p.numel() for p in model.model.visual.parameters())
    seven_b = mp.KNOWN_SHAPES["7b"]
    assert mp.text_params(seven_b) + mp.vision_params(seven_b) == 8_292_166_656  # Qwen2.5-VL-7B-Instruct


@pytest.mark.parametrize("size", [(640, 360), (1920, 1080), (300, 500), (50, 60)])
def test_frame_resize_is_qwens(size):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    w, h = size
    assert mp.smart_resize(h, w, 28, 3136, 100352) == smart_resize(h, w, 28, 3136, 100352)


def test_video_tokens():
    s = mp.KNOWN_SHAPES["7b"]
    media = {"fps": 2.0, "min_frames": 4, "max_frames": 32, "min_pixels": 3136, "max_pixels": 100352}
    assert mp.video_tokens(media, s) == (16 * 128, 16 * 128 * 4)  # 32 frames, 128 tokens per 2 frames
    assert mp.video_tokens(media, s, seconds=7.3)[0] == 7 * 128  # 15 frames, cut to 14
    assert mp.video_tokens(media, s, seconds=0.5)[0] == 2 * 128  # min_frames
    assert mp.video_tokens(media, s, frame_size=(640, 360))[0] == 16 * 8 * 15  # 224 x 420 per frame


def seven_b(**over) -> dict:
    config = mp.load_config([str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml")])
    return merge_layers(config, over)


def activations(job) -> float:
    return sum(t.bytes for t in job.terms if t.name.startswith("activations"))


def test_the_7b_config_fits_16_gpus_of_80_gb_with_margin(capsys):
    assert mp.world_size(seven_b(), "grpo_train") == 16 and mp.world_size(seven_b(), "dpo_train") == 8
    settings = mp.Settings(gpu_gb=80, gpus=16)
    assert mp.not_fitting(mp.plan(seven_b(), settings), settings) == []
    # and still when flash-attn is missing and the policy falls back to sdpa
    fallback = mp.Settings(gpu_gb=80, gpus=16, attn="sdpa")
    assert mp.not_fitting(mp.plan(seven_b(), fallback), fallback) == []
    argv = ["--configfile", str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml"),
            "--gpus", "16", "--gpu-gb", "80"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "zero_config auto: grpo_train ZeRO-2" in out and "dpo_train ZeRO-2" in out
    assert "gradient checkpointing True" in out and "DOES NOT FIT" not in out


def test_zero_config_auto_picks_zero2_where_it_fits_with_margin():
    """The 7B config (zero_config auto) gets ZeRO-2 on 80 GB cards at its 16 (GRPO) and 8 (DPO) GPUs, ZeRO-3
    where ZeRO-2's whole weights and sharded optimiser do not fit the 15% margin (40 GB cards; one GPU,
    where nothing is sharded), and ZeRO-2 without a GPU (nothing to fit: the CPU default's stage)."""
    def choices(config, **settings):
        return {rule: choice for rule, (_, choice) in mp.training_jobs(config, mp.Settings(**settings)).items()}

    config = seven_b()
    assert config["train"]["zero_config"] == "auto"
    for rule, c in choices(config, gpu_gb=80, gpus=16).items():
        assert (c.stage, c.zero_config) == (2, "configs/deepspeed/zero2.json"), (rule, c)
        assert c.peak_gib[2] <= c.budget_gib == 0.85 * 80, (rule, c)
    assert {r: c.stage for r, c in choices(config, gpu_gb=40, gpus=16).items()} == {"grpo_train": 3, "dpo_train": 3}
    one = merge_layers(config, {"resources": {"dpo_train": {"nodes": 1, "procs_per_node": 1}}})
    assert {r: c.stage for r, c in choices(one, gpu_gb=141, gpus=1).items()} == {"grpo_train": 3, "dpo_train": 3}
    plans = {rule: at for rule, (at, _) in mp.training_jobs(config, mp.Settings()).items()}
    none = mp.choose_zero_config(plans["grpo_train"], None)
    assert (none.stage, none.reason) == (2, "no GPU: nothing to fit, ZeRO-2")
    # a bigger token budget per forward is what tips the choice
    big = merge_layers(config, {"grpo": {"micro_batch": 64, "micro_batch_tokens": 65536}})
    assert choices(big, gpu_gb=80, gpus=16)["grpo_train"].stage == 3


def test_token_budget_bounds_the_update_activations():
    """A forward of micro_batch_tokens carries at most that many tokens (fractional sequences of the
    longest length), at least one sequence, and no more than micro_batch sequences."""
    assert mp.sequences_per_forward(4608, 8, 16384) == pytest.approx(16384 / 4608)
    assert mp.sequences_per_forward(4608, 8, 1000) == 1 and mp.sequences_per_forward(100, 8, 16384) == 8
    assert mp.sequences_per_forward(4608, 4, None) == 4
    jobs = {budget: {j.name: j for j in mp.plan(seven_b(train={"zero_config": "configs/deepspeed/zero3.json"},
                                                              grpo={"micro_batch_tokens": budget}))}
            for budget in (4608, 9216, 18432)}
    per = [activations(jobs[b]["grpo_train: update"]) for b in (4608, 9216, 18432)]
    assert per[1] == pytest.approx(2 * per[0], rel=1e-6) and per[2] == pytest.approx(4 * per[0], rel=1e-6)


def test_the_colocated_vllm_engine_has_its_share_awake_and_an_allowance_asleep(capsys):
    """grpo.rollout_backend auto (the 7B config) plans vLLM: gpu_memory_utilization of the card while it
    samples (its weights + KV cache), VLLM_ASLEEP while the trainer scores and updates."""
    settings = mp.Settings(gpu_gb=80, gpus=16)
    zero3 = {"train": {"zero_config": "configs/deepspeed/zero3.json"}}  # one engine whatever the engine's share
    jobs = {j.name: j for j in mp.plan(seven_b(**zero3), settings)}
    assert "grpo_train: sample" not in jobs
    engine = [t for t in jobs["grpo_train: sample (vLLM)"].terms if t.name.startswith("vLLM engine")]
    assert sum(t.bytes for t in engine) == pytest.approx(0.4 * 80 * mp.GIB)
    assert engine[0].bytes == 2 * 8_292_166_656  # its own bf16 copy of every weight
    fallback = {j.name: j for j in mp.plan(seven_b(**zero3), mp.Settings(gpu_gb=80, gpus=16, rollouts="hf"))}
    assert not any(t.name.startswith("vLLM") for j in fallback.values() for t in j.terms)
    for name in ("grpo_train: score", "grpo_train: update"):
        assert jobs[name].total - fallback[name].total == mp.VLLM_ASLEEP
    # the trainer's side of sampling is the same either way; our sampler's KV cache and prefill are gone
    trainer = {t.name for t in fallback["grpo_train: sample"].terms} - {t.name for t in engine}
    assert {t.name for t in jobs["grpo_train: sample (vLLM)"].terms} - {t.name for t in engine} < trainer
    # without sleep mode the engine keeps its whole share through scoring and the update
    awake = {j.name: j for j in mp.plan(seven_b(grpo={"vllm": {"enable_sleep_mode": False}}, **zero3), settings)}
    assert awake["grpo_train: update"].total - fallback["grpo_train: update"].total == pytest.approx(32 * mp.GIB)
    # zero_config auto (the 7B config) counts the engine too: ZeRO-2 still fits beside it on 80 GB
    assert "grpo_train ZeRO-2 (ZeRO-2 fits" in "\n".join(mp.describe(seven_b(), settings))
    # vLLM's default share (0.9) beside the trainer does not fit: the config must set it
    unset = seven_b()
    del unset["grpo"]["vllm"]["gpu_memory_utilization"]
    assert [j.name for j in mp.not_fitting(mp.plan(unset, settings), settings)] == ["grpo_train: sample (vLLM)"]
    assert cli.main(["--configfile", str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml"),
                    "--gpus", "16"]) == 0
    out = capsys.readouterr().out
    assert "grpo rollouts: a colocated vLLM engine (grpo.rollout_backend auto" in out
    assert "67 rollouts of 2560 + 2048 tokens at once" in out  # a rank's round: 64 / 16 queries x G 8 = 32
    tiny = mp.plan(mp.load_config([str(ROOT / "config.yaml")]))
    assert "grpo_train: sample" in {j.name for j in tiny}  # the tiny default: our sampler


def test_gradient_checkpointing_lowers_the_activations():
    jobs = {gc: {j.name: j for j in mp.plan(seven_b(train={"gradient_checkpointing": gc}))} for gc in (False, True)}
    for name in ("grpo_train: update", "dpo_train: update"):
        assert activations(jobs[True][name]) * 10 < activations(jobs[False][name])
        assert jobs[True][name].total < jobs[False][name].total


def test_an_oversized_setting_is_reported_and_fails(tmp_path, capsys):
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"grpo": {"micro_batch": 64}, "train": {"gradient_checkpointing": False}}))
    argv = ["--configfile", str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml"), str(over)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memory_plan: grpo_train: update needs")
    assert "dpo_train: update needs" in err[0]  # checkpointing off: DPO's pair does not fit either
    assert "eval_generate" not in err[0] and "sample" not in err[0]


def test_the_reported_eval_oom_is_predicted():
    """eval batch_size 64 at 128 frames ran out of memory with the HF backend."""
    settings = mp.Settings(gpu_gb=80)
    bad = mp.not_fitting(mp.plan(seven_b(eval={"batch_size": 64}), settings), settings)
    assert [j.name for j in bad] == ["eval_generate (hf)"]
