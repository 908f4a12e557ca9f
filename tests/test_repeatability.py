"""Same seed, same machine, same artifacts (issue 20, item 6).

Two default runs with one seed gave different base/model hashes, and so different pair counts: the
synthetic videos themselves differed. PyAV's encode() converting the RGB frames to yuv420p itself made
bytes that varied with what the heap held before, so 9 of the 69 videos of a shortened run differed
between two runs (decoded pixels up to 13 levels apart), and the warm-up trained on other frames."""
import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import small_config, snakemake
from veripo.data import synthetic


def test_synthetic_video_bytes_do_not_depend_on_the_heap(tmp_path):
    frames = synthetic.draw_frames("right", "red", 2, 24, 64)
    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    digests = set()
    for _ in range(40):
        # frames converted and freed, as a job writing dozens of videos leaves the heap
        junk = [av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
                .reformat(format="yuv420p") for _ in range(50)]
        del junk
        synthetic.write_mp4(path, frames, 8)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1, f"{len(digests)} different files from the same frames"


def _digests(run: Path) -> dict[str, str]:
    """sha256 of every artifact of the run (its config and Snakemake's markers aside); in the training
    metrics, of every field but the wall-clock ones (seconds/...)."""
    out = {}
    for top in ("data", "base", "iter0", "iter1"):
        for p in sorted((run / top).rglob("*")):
            if not p.is_file() or p.name == ".snakemake_timestamp":
                continue
            data = p.read_bytes()
            if p.name == "metrics.jsonl":
                rows = [json.loads(line) for line in data.splitlines() if line.strip()]
                data = json.dumps([{k: v for k, v in r.items() if not k.startswith("seconds/")} for r in rows]).encode()
            out[str(p.relative_to(run))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
def test_two_runs_with_one_seed_write_identical_checkpoints_and_pairs(tmp_path, default_config):
    cfg = small_config(default_config, iterations=1)
    cfg["warmup"]["steps"] = 80  # enough for the rollouts to differ in reward, so that iteration 1 has pairs
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        run.mkdir()
        out = snakemake(run, cfg, "iter1/dpo/pairs.jsonl")
        assert out.returncode == 0, out.stderr[-3000:]
    first, second = (_digests(run) for run in runs)
    assert first.keys() == second.keys()
    for name in ("base/model/model.safetensors", "iter0/grpo/model/model.safetensors",
                 "iter1/grpo/model/model.safetensors", "iter1/grpo/rollouts.jsonl", "iter1/verifier/verdicts.jsonl",
                 "iter1/dpo/pairs.jsonl"):
        assert name in first
    assert any(name.endswith(".mp4") for name in first)
    assert (runs[0] / "iter1/dpo/pairs.jsonl").read_text().strip(), "no pairs: the comparison would show little"
    differ = sorted(name for name in first if first[name] != second[name])
    assert not differ, f"{len(differ)} artifacts differ between two runs with one seed: {differ[:10]}"
