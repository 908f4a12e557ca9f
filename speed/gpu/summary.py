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
    gr_step, dp_step = _get(gr, "step") or {}, _get(dp, "step") or {}
    dp_loss = _get(dp_step, "loss_minus_ln2")
    gc_diff = _get(fb, "gc_logprob_max_abs_diff")
    return {
        "fwd_bwd_finite": _finite(*(_get(fb, f"gc_{s}", k) for s in ("off", "on") for k in ("loss", "grad_norm"))),
        "gc_same_logprobs": None if gc_diff is None else gc_diff <= 1e-3,
        "sampler_matches_hf": _get(sm, "identity_fp32", "tokens_identical"),
        "grpo_loss_finite": _finite(_get(gr_step, "loss"), _get(gr_step, "grad_norm")),
        "grpo_weights_moved": _get(gr_step, "weights_moved"),
        "grpo_vision_frozen": _get(gr_step, "vision_unchanged"),
        "dpo_loss_finite": _finite(_get(dp_step, "loss"), _get(dp_step, "grad_norm")),
        "dpo_first_loss_is_ln2": None if dp_loss is None or not _finite(dp_loss)
        else abs(dp_loss) <= LN2_TOLERANCE.get(_get(dp, "dtype"), 1e-3),
        "dpo_weights_moved": _get(dp_step, "weights_moved"),
        "dpo_vision_frozen": _get(dp_step, "vision_unchanged"),
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
            return (f"{p.get('shape')}: {one('policy_sample')}, {one('batch_generate')}, "
                    f"{_get(p, 'policy_sample', 'tokens_hf')} tokens")
        parts = [f"fp32 {_part(r.get('identity_fp32'), three)}"]
        if "agreement_bf16" in r:
            parts.append(f"bf16 {_part(r.get('agreement_bf16'), three)}")
        parts.append("decode " + _part(r.get("decode"), lambda p: (
            f"G={p['group']} x {p['new_tokens']}: {_num(p['tokens_per_s'])} tok/s, {p['ms_per_step']} ms/step, "
            f"peak {_num(p.get('peak_gib'), '{:.1f}')} GiB")))
        return " | ".join(parts)
    if name == "engines":
        ratios, diffs = r.get("grad_norm_ratio") or {}, r.get("max_weight_diff") or {}
        return (f"{r.get('shape_trained')}, micro-batches {r.get('micro_batches')}: grad norm " + ", ".join(
            f"{k} {_part(r.get(k), lambda p: _num(p['grad_norm'], '{:.6g}'))}" for k in ("torch", "zero2", "zero3"))
            + "; ratio to torch " + ", ".join(f"{k} {v:.6f}" for k, v in ratios.items())
            + "; max weight diff " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    step = r.get("step")
    return _part(step, lambda p: (
        f"loss {p['loss']:.4f}, grad norm {_num(p['grad_norm'], '{:.3g}')}, weights moved {p['weights_moved']}; "
        f"{p['seconds']:.0f} s (DeepSpeed init {p['ds_init_seconds']:.0f} s"
        + (f", sampling {p['sample_seconds']:.1f} s at {_num(p['sample_tokens_per_s'])} tok/s"
           if "sample_seconds" in p else "")
        + f"); train {p['train_seconds']:.2f} s: " + _rate(p, "train_tokens_per_s")))


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
    lines.append("checks: " + ", ".join(f"{k}={v}" for k, v in summary["checks"].items()))
    a.out.mkdir(parents=True, exist_ok=True)
    _write(a.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    _write(a.out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = all(summary["steps"][n]["status"] == "ok" for n in STEPS) and all(summary["checks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
