"""speed/cluster_estimate.py on a synthetic GPU-check summary: each row is its work over the rate it names,
the totals are the rows' sums, more GPUs take fewer hours, and a rate the summary lacks is reported
missing by name instead of estimated. (tests/test_gpu_check.py runs it on the CPU dry run's summary.)"""
import copy
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("cluster_estimate", ROOT / "speed" / "cluster_estimate.py")
ce = sys.modules["cluster_estimate"] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ce)
mp = ce.mp

# shaped as speed/gpu/summary.py writes it; round figures
SUMMARY = {
    "shape": "7b", "device": "cuda", "dtype": "bfloat16", "gpu": "NVIDIA H200", "peak_bf16_tflops": 989.0,
    "steps": {
        "sampler": {"status": "ok", "result": {"decode": {"group": 8, "new_tokens": 256, "ms_per_step": 10.0,
                                                          "tokens_per_s": 800.0}}},
        "fwd_bwd": {"status": "ok", "result": {"layer_weights": 6_525_288_448,
                                               "gc_off": {"tokens_per_s": 20000.0, "tflops": 400.0, "mfu": 0.40}}},
        "grpo": {"status": "ok", "result": {"step": {"zero_stage": 2, "ds_init_seconds": 20.0,
                                                     "train_tokens_per_s": 9e3, "tflops": 300.0}}},
        "dpo": {"status": "ok", "result": {"step": {"zero_stage": 2, "ds_init_seconds": 15.0,
                                                    "train_tokens_per_s": 8e3, "tflops": 250.0}}},
    },
}


def seven_b() -> dict:
    return mp.load_config([str(ROOT / "config.yaml"), str(ROOT / "configs" / "qwen25vl-7b.yaml")])


def rows(summary: dict, gpus: int = 16) -> dict:
    setup = ce.Setup(gpus, video_queries=1024, activation_queries=512)
    return {r.stage if part == "iteration k >= 1" or "activation" in r.stage else f"0 {r.stage}": r
            for part, part_rows in ce.estimate(seven_b(), ce.rates_from_summary(summary, 2), setup).items()
            for r in part_rows}


def test_flops_are_the_gpu_checks_count_of_the_7b():
    s = mp.KNOWN_SHAPES["7b"]
    # the decoder layers' matmul weights: the text parameters less embedding, LM head, biases and norms
    rest = 2 * s.vocab * s.hidden + s.layers * (s.hidden + 2 * s.kv_width + 2 * s.hidden) + s.hidden
    assert s.layers * ce.layer_weights(s) == mp.text_params(s) - rest == 6_525_288_448
    assert ce.forward_flops(s, 1, 0, 1) == 2 * 6_525_288_448 + 2 * s.vocab * s.hidden + 2 * s.layers * s.hidden


def test_each_row_is_its_work_over_its_rate_and_the_totals_add_up():
    r = rows(SUMMARY)
    s, G = mp.KNOWN_SHAPES["7b"], 8
    prompt, new = mp.TEXT_TOKENS + 2048, 1024  # 32 frames at 100352 pixels; half of max_new_tokens 2048
    update = r["GRPO video: update"]
    assert update.gpu_seconds == pytest.approx(3 * ce.forward_flops(s, 1024 * G, prompt, new) / 300e12)
    assert update.wall_seconds == pytest.approx(update.gpu_seconds / 16)
    sampling = r["GRPO video: sampling"]  # a prefill (vision once) and a group of 8 per query, 10 ms a step
    prefill = ce.forward_flops(s, 1, prompt, 0) + 2 * mp.vision_params(s) * 2048 * 4
    assert sampling.gpu_seconds == pytest.approx(1024 * (prefill / 400e12 + new * 0.010))
    assert r["GRPO video: job start"].wall_seconds == 20.0  # the longer DeepSpeed init
    assert r["judge"].wall_seconds == r["judge"].gpu_seconds  # one GPU
    evaluation = r["evaluation"]
    assert evaluation.gpu_seconds > evaluation.wall_seconds >= evaluation.gpu_seconds / 16
    out = ce.estimate(seven_b(), ce.rates_from_summary(SUMMARY, 2), ce.Setup(16, 1024, 512))
    for part, part_rows in out.items():
        gpu, wall, missing = ce.total(part_rows)
        assert missing == 0
        assert gpu == pytest.approx(sum(x.gpu_seconds for x in part_rows))
        assert wall == pytest.approx(sum(x.wall_seconds for x in part_rows))
    text = ce.report(seven_b(), ce.rates_from_summary(SUMMARY, 2), ce.Setup(16, 1024, 512), SUMMARY, "")
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| **")]
    hours = {cells[0].strip("| *"): float(cells[3]) for cells in table}
    k = seven_b()["iterations"]
    assert hours["run"] == pytest.approx(hours["iteration 0"] + k * hours["iteration k >= 1"], abs=0.02)
    assert "missing" not in text and "THE SUMMARY MEASURED SHAPE" not in text  # 7b measured, 7b planned


def test_more_gpus_take_fewer_hours():
    few, many = rows(SUMMARY, 16), rows(SUMMARY, 64)
    for stage in ("GRPO video: sampling", "GRPO video: scoring", "GRPO video: update", "DPO"):
        assert many[stage].wall_seconds < few[stage].wall_seconds
        assert many[stage].gpu_seconds == pytest.approx(few[stage].gpu_seconds)  # the same work
    assert many["judge"].wall_seconds == few["judge"].wall_seconds  # a one-GPU job
    # sampling spreads over at most rollout_batch (64) GPUs: 128 are no faster than 64
    assert rows(SUMMARY, 128)["GRPO video: sampling"].wall_seconds == many["GRPO video: sampling"].wall_seconds


def test_a_missing_or_failed_rate_is_reported_not_estimated():
    summary = copy.deepcopy(SUMMARY)
    del summary["steps"]["sampler"]
    summary["steps"]["dpo"]["result"] = {"error": "RuntimeError: CUDA out of memory"}
    r = rows(summary)
    for stage in ("GRPO video: sampling", "judge", "evaluation"):
        assert r[stage].gpu_seconds is None and r[stage].wall_seconds is None
        assert "missing: step sampler not in the summary" in r[stage].rate
    assert r["DPO"].gpu_seconds is None and "step dpo failed: RuntimeError: CUDA out of memory" in r["DPO"].rate
    assert r["GRPO video: update"].gpu_seconds is not None  # what was measured is still estimated
    text = ce.report(seven_b(), ce.rates_from_summary(summary, 2), ce.Setup(16, 1024, 512), summary, "")
    assert "without 4 missing row(s)" in text and "(rows missing)" in text


def test_a_group_measured_in_several_modes_takes_the_fastest():
    """The GPU check's decode rows: one part per group, a row per mode (eager; CUDA graphs on a GPU)."""
    summary = copy.deepcopy(SUMMARY)
    summary["steps"]["sampler"]["result"] = {
        f"decode_g{g}": {"group": g, "rows": [{"group": g, "mode": "eager", "ms_per_step": 25.0},
                                              {"group": g, "mode": "graphs", "ms_per_step": ms}]}
        for g, ms in ((8, 9.0), (32, 12.0), (64, 20.0))}
    rates = ce.rates_from_summary(summary, 2)
    assert {g: r.value for g, r in rates.decode.items()} == {8: 9.0, 32: 12.0, 64: 20.0}
    assert rates.decode[32].source == "sampler.decode_g32.rows[1] (graphs)"
    assert rates.ms_per_step(16)[0] == 9.0 and rates.ms_per_step(48)[0] == 12.0  # the nearest measured group


def test_the_update_rate_is_the_configs_zero_stage_and_a_given_rate_wins(tmp_path):
    summary = copy.deepcopy(SUMMARY)
    summary["steps"]["grpo"]["result"] = {"zero2": {**SUMMARY["steps"]["grpo"]["result"]["step"]},
                                          "zero3": {"zero_stage": 3, "train_tokens_per_s": 3e3, "tflops": 70.0}}
    assert ce.rates_from_summary(summary, 3).named["grpo_update"].value == 70.0
    assert ce.rates_from_summary(summary, 2).named["grpo_update"].value == 300.0
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    out = subprocess.run([sys.executable, str(ROOT / "speed" / "cluster_estimate.py"), str(path), "--gpus", "16",
                          "--video-queries", "1024", "--rate", "decode@32=40", "--rate", "forward=451"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "decode G=32: 40 ms/step (given on the command line)" in out.stdout
    assert "forward: 451 TFLOP/s (given on the command line)" in out.stdout
    assert "train.zero_config auto: the update rates of ZeRO-2" in out.stdout
    assert "| **run** |" in out.stdout
