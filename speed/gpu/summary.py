"""The GPU check's summary: every step's status and numbers in one JSON, the checks that give them meaning,
and a few human lines.

    python speed/gpu/summary.py --results DIR --steps steps.tsv --out OUT --seconds N

Writes OUT/summary.json and OUT/summary.txt (each to a temporary name, then renamed) and prints the
lines; exits 1 when a step did not finish ok or a check is false.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

STEPS = ("preflight", "fwd_bwd", "sampler", "grpo", "dpo", "engines")
ZERO_STAGES = ("zero2", "zero3")  # the parts of the grpo and dpo steps
LN2_TOLERANCE = {"float32": 1e-3, "bfloat16": 2e-2}  # the reference and the policy forward differ by float noise
# |grad-norm ratio - 1| of ZeRO-2/3 to torch on one step: fp32 agrees to rounding; in bf16 torch accumulates
# the micro-batches' gradients in bf16 where DeepSpeed adds them in fp32. A lost micro-batch is off by > 10%.
ENGINE_TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}


def _get(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _finite(*xs) -> bool | None:
    if any(x is None for x in xs):
        return None
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def checks(results: dict) -> dict:
    """True/false per property the check exists to show; None where its step did not get that far."""
    fb, sm, gr, dp, en = (results.get(k, {}) for k in ("fwd_bwd", "sampler", "grpo", "dpo", "engines"))
    ratios = _get(en, "grad_norm_ratio")
    gc_diff = _get(fb, "gc_logprob_max_abs_diff")

    def every_stage(r: dict, test) -> bool | None:
        """``test(part)`` on both ZeRO stages' parts of a loop; None until both got that far."""
        values = [test(_get(r, k) or {}) for k in ZERO_STAGES]
        return None if any(v is None for v in values) else all(values)

    def ln2(p: dict) -> bool | None:
        x = p.get("loss_minus_ln2")
        return None if x is None or not _finite(x) else abs(x) <= LN2_TOLERANCE.get(_get(dp, "dtype"), 1e-3)

    return {
        "fwd_bwd_finite": _finite(*(_get(fb, f"gc_{s}", k) for s in ("off", "on") for k in ("loss", "grad_norm"))),
        "gc_same_logprobs": None if gc_diff is None else gc_diff <= 1e-3,
        "sampler_matches_hf": _get(sm, "identity_fp32", "tokens_identical"),
        "grpo_loss_finite": every_stage(gr, lambda p: _finite(p.get("loss"), p.get("grad_norm"))),
        "grpo_weights_moved": every_stage(gr, lambda p: p.get("weights_moved")),
        "grpo_vision_frozen": every_stage(gr, lambda p: p.get("vision_unchanged")),
        "dpo_loss_finite": every_stage(dp, lambda p: _finite(p.get("loss"), p.get("grad_norm"))),
        "dpo_first_loss_is_ln2": every_stage(dp, ln2),
        "dpo_weights_moved": every_stage(dp, lambda p: p.get("weights_moved")),
        "dpo_vision_frozen": every_stage(dp, lambda p: p.get("vision_unchanged")),
        "engines_same_grad_norm": None if not ratios else all(
            _finite(x) and abs(x - 1) <= ENGINE_TOLERANCE.get(_get(en, "dtype"), 1e-5) for x in ratios.values()),
    }


def _num(x, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _count(n) -> str:
    """3.75 B, 231.6 k: parameter counts of every shape in one format."""
    if not isinstance(n, (int, float)):
        return "-"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _rate(p: dict, tokens_key: str = "tokens_per_s") -> str:
    mfu = p.get("mfu")
    return (f"{_num(p.get(tokens_key))} tok/s, {_num(p.get('tflops'), '{:.1f}')} TFLOP/s"
            + (f", MFU {mfu:.1%}" if isinstance(mfu, (int, float)) else "")
            + f", peak {_num(p.get('peak_gib'), '{:.1f}')} GiB")


def _part(p: dict | None, text) -> str:
    if not p:
        return "-"
    return p["error"] if "error" in p else text(p)


def describe(name: str, r: dict) -> str:
    """One line of what step ``name`` measured (or where it failed)."""
    try:
        return _describe(name, r)
    except (KeyError, TypeError, ValueError):  # a step stopped by its time limit in the middle of a part
        return "incomplete result (see summary.json)"


def _describe(name: str, r: dict) -> str:
    if not r:
        return "no result"
    if "error" in r:
        return r["error"]
    if name == "preflight":
        m, d = r.get("model", {}), r.get("accelerator", {})
        return (f"{d.get('name') or d.get('error') or 'cpu'}; {_count(m.get('params'))} params "
                f"(vision {_count(m.get('params_vision'))}), prompt {_num(m.get('prompt_tokens'))} "
                f"tokens ({_num(m.get('video_tokens'))} video)" + (f"; {m['error']}" if "error" in m else ""))
    if name == "fwd_bwd":
        return f"{r.get('n')} x ({r.get('prompt_tokens')} + {r.get('completion_tokens')}) tokens: " + " | ".join(
            f"gc {s}: " + _part(r.get(f"gc_{s}"), lambda p: f"{p['seconds']:.3f} s, " + _rate(p))
            for s in ("off", "on"))
    if name == "sampler":
        def three(p):
            def one(name):
                q = p.get(name) or {}
                return f"{name} {'==' if q.get('equal') else '!='} HF (agree {_num(q.get('agreement'), '{:.2f}')})"
            names = [n for n in ("policy_sample", "policy_sample_eager", "batch_generate") if n in p]
            return (f"{p.get('shape')}: {', '.join(one(n) for n in names)}, "
                    f"{_get(p, 'policy_sample', 'tokens_hf')} tokens")
        parts = [f"fp32 {_part(r.get('identity_fp32'), three)}"]
        if "agreement_bf16" in r:
            parts.append(f"bf16 {_part(r.get('agreement_bf16'), three)}")
        rows = decode_rows(r)
        parts.append("decode " + (", ".join(
            f"G={row['group']} {row['mode']} {_num(row['ms_per_step'], '{:.2f}')} ms/step" for row in rows) or "-")
            + " (rows below)")
        return " | ".join(parts)
    if name == "engines":
        ratios, diffs = r.get("grad_norm_ratio") or {}, r.get("max_weight_diff") or {}
        return (f"{r.get('shape_trained')}, micro-batches {r.get('micro_batches')}: grad norm " + ", ".join(
            f"{k} {_part(r.get(k), lambda p: _num(p['grad_norm'], '{:.6g}'))}" for k in ("torch", "zero2", "zero3"))
            + "; ratio to torch " + ", ".join(f"{k} {v:.6f}" for k, v in ratios.items())
            + "; max weight diff " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return f"{_count(r.get('params'))} params ({r.get('train_layers')} text layers): " + ", ".join(
        f"ZeRO-{k[-1]} " + _part(r.get(k), lambda p: (
            f"loss {p['loss']:.4f}, weights moved {p['weights_moved']}, MFU "
            + (f"{p['mfu']:.1%}" if isinstance(p.get("mfu"), (int, float)) else "-")))
        for k in ZERO_STAGES) + " (rows below)"


def describe_updates(results: dict) -> list[str]:
    """One line per loop and ZeRO stage: the timed optimiser step's tokens, rate and MFU, and the peak
    memory against the memory plan's prediction for the same shapes."""
    lines = []
    for name in ("grpo", "dpo"):
        r = results.get(name) or {}
        for k in ZERO_STAGES:
            if k not in r:
                continue
            p = r[k]
            lines.append(f"update {name} ZeRO-{k[-1]}: " + _part(p, lambda p: (
                f"{p['train_tokens']:,} tokens in {p['train_forwards']} forwards "
                f"({_num(p.get('tokens_per_micro_batch'))} per forward with padding), {p['train_seconds']:.2f} s: "
                + _rate(p, "train_tokens_per_s")
                + f" (plan {_num(p.get('plan_peak_gib'), '{:.1f}')} GiB, {p.get('plan_peak_phase')}"
                + (f"; measured/plan {p['peak_over_plan']:.2f}" if "peak_over_plan" in p else "")
                + f"); DeepSpeed init {p['ds_init_seconds']:.0f} s"
                + (f", sampling {p['sample_seconds']:.1f} s at {_num(p['sample_tokens_per_s'])} tok/s"
                   if "sample_seconds" in p else ""))))
    return lines


def decode_rows(sampler: dict) -> list[dict]:
    """The sampler step's decode rows (group size x mode), in the order measured."""
    return [row for key, part in sampler.items() if key.startswith("decode_g") and isinstance(part, dict)
            for row in part.get("rows", [])]


def describe_decode(sampler: dict) -> list[str]:
    """One line per decode row: ms/step, tok/s and the ratio to the weight-read floor; a failed group's error."""
    floor, gb = sampler.get("weight_read_ms"), (sampler.get("decode_weight_bytes") or 0) / 1e9
    lines = []
    for key, part in sampler.items():
        if not (key.startswith("decode_g") and isinstance(part, dict)):
            continue
        if "error" in part:
            lines.append(f"decode G={part.get('group')}: {part['error']}")
        for row in part.get("rows", []):
            ratio = row.get("floor_ratio")
            lines.append(
                f"decode G={row['group']:<3} {row['mode']:<6} {_num(row['ms_per_step'], '{:.2f}')} ms/step, "
                f"{_num(row['tokens_per_s'])} tok/s, "
                + (f"{ratio:.1f}x the weight-read floor ({floor:.2f} ms: {gb:.2f} GB at "
                   f"{sampler.get('memory_bandwidth_tbs')} TB/s)" if isinstance(ratio, (int, float))
                   else "weight-read floor - (no bandwidth known)")
                + f", KV read {_num(row.get('kv_read_gb'), '{:.2f}')} GB/step, {part.get('prompt_tokens')}-token "
                f"prompt + {row['new_tokens']}, peak {_num(row.get('peak_gib'), '{:.1f}')} GiB")
    return lines


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--steps", type=Path, required=True, help="run.sh's table: name, status, rc, seconds, limit")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    a = ap.parse_args()
    runs = {}
    for line in a.steps.read_text().splitlines():
        name, status, rc, seconds, limit = line.split("\t")
        runs[name] = {"status": status, "rc": int(rc) if rc else None, "seconds": int(seconds), "limit": int(limit)}
    results = {}
    for name in STEPS:
        f = a.results / f"{name}.json"
        results[name] = json.loads(f.read_text()) if f.exists() else {}
    first = next((r for r in results.values() if r), {})
    summary = {
        "shape": os.environ.get("SHAPE", first.get("shape")), "device": os.environ.get("DEVICE", first.get("device")),
        "dtype": first.get("dtype"), "gpu": _get(results, "preflight", "accelerator", "name"),
        "peak_bf16_tflops": _get(results, "preflight", "accelerator", "peak_bf16_tflops"), "seconds": a.seconds,
        "steps": {name: {**runs.get(name, {"status": "not run"}), "result": results[name]} for name in STEPS},
        "checks": checks(results),
    }
    lines = [f"GPU check: shape {summary['shape']} on {summary['gpu'] or summary['device']}, {summary['dtype']}, "
             f"{a.seconds} s"]
    for name in STEPS:
        run = summary["steps"][name]
        lines.append(f"{name:<10} {run['status']:<8} {run.get('seconds', 0):>4} s  {describe(name, results[name])}")
    lines += describe_decode(results.get("sampler") or {})
    lines += describe_updates(results)
    lines.append("checks: " + ", ".join(f"{k}={v}" for k, v in summary["checks"].items()))
    a.out.mkdir(parents=True, exist_ok=True)
    _write(a.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    _write(a.out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = all(summary["steps"][n]["status"] == "ok" for n in STEPS) and all(summary["checks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
