"""Same seed, same machine, same artifacts (issue 20, item 6).

Two default runs with one seed gave different base/model hashes, and so different pair counts: the
synthetic videos themselves differed (9 of the 69 videos of a shortened run, decoded pixels up to 13
levels apart), and the warm-up trained on other frames. The cause is in x264's assembly paths (the
same yuv frames encoded again in one process gave different files, with one encoder thread too, and
never with asm or mbtree off): write_mp4 now encodes with asm=0."""
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_config, snakemake
from veripo.data import synthetic


WRITE_SET = """
import hashlib, itertools, sys
from pathlib import Path
from veripo.data import synthetic
out = Path(sys.argv[1])
for i, (d, c, n) in enumerate(itertools.product(synthetic.DIRECTIONS, synthetic.COLORS, (1, 2, 3))):
    synthetic.write_mp4(out / f"{i}.mp4", synthetic.draw_frames(d, c, n, 24, 64), 8)
    print(hashlib.sha256((out / f"{i}.mp4").read_bytes()).hexdigest())
"""


def test_the_same_frames_encode_to_the_same_bytes_again_and_again_in_one_process(tmp_path):
    """The same frames written 40 times inside one process, other videos written between: one file.
    With x264's assembly on this gave 2-8 different files in 40 tries."""
    frames = synthetic.draw_frames("left", next(iter(synthetic.COLORS)), 2, 16, 64)
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        for j in range(3):
            other = synthetic.draw_frames(rng.choice(synthetic.DIRECTIONS), rng.choice(list(synthetic.COLORS)),
                                          rng.randint(1, 3), 16, 64)
            synthetic.write_mp4(tmp_path / f"other{j}.mp4", other, 8)
        synthetic.write_mp4(tmp_path / "same.mp4", frames, 8)
        seen.add(hashlib.sha256((tmp_path / "same.mp4").read_bytes()).hexdigest())
    assert len(seen) == 1, f"{len(seen)} different files from the same frames"


def test_synthetic_videos_are_the_same_bytes_in_two_processes(tmp_path):
    """Dozens of videos written by one fresh process, twice: the same bytes, as two data_synthetic jobs
    write them."""
    digests = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        proc = subprocess.run([sys.executable, "-c", WRITE_SET, str(tmp_path / run)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])), timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append(proc.stdout.split())
    assert len(digests[0]) == 4 * len(synthetic.COLORS) * 3
    assert digests[0] == digests[1], f"{sum(a != b for a, b in zip(*digests))} videos differ between two processes"


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
