"""The speed scripts measure what they say: DPO vs GRPO cost from a run folder with known benchmark
files gives the known figures; the frame-cache and eval-batching scripts run at small sizes, and
their own checks (cached frames pixel-equal, batched answers identical) pass."""
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def speed(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "speed" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def benchmark_file(run, rule: str, k: int, *rows: tuple[float, float]) -> None:
    """Snakemake's benchmark TSV: one row of (s, cpu_time) per repeat."""
    path = run / "logs" / "benchmarks" / rule / f"iter{k}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_HEADER + "".join(f"{s:.2f}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{cpu:.2f}\n" for s, cpu in rows))


def grpo_outputs(run, k: int, rollouts: int, G: int = 8) -> None:
    out = run / f"iter{k}" / "grpo"
    out.mkdir(parents=True)
    out.joinpath("rollouts.jsonl").write_text("".join(json.dumps({"rollout_id": f"q{i // G}@r0#{i % G}"}) + "\n"
                                                      for i in range(rollouts)))
    out.joinpath("settings.json").write_text(json.dumps({"config": {"grpo": {"rollouts_per_query": G}}}))


def dpo_outputs(run, k: int, pairs_per_step: list[int]) -> None:
    out = run / f"iter{k}" / "dpo"
    out.mkdir(parents=True)
    out.joinpath("metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.6, "pairs": n}) + "\n"
                                                     for s, n in enumerate(pairs_per_step)))


@pytest.fixture
def run_dir(tmp_path):
    """Iterations 1 and 2 trained both stages; iteration 0 is the activation (no DPO) and iteration 3's
    DPO was skipped (no pair trained): only 1 and 2 count.
        GRPO wall 40 + mean(18, 22) = 60 s over 64 + 32 = 96 rollouts: 0.625 s/rollout (12 groups of 8)
        DPO  wall 8 + 4 = 12 s over 16 + 8 = 24 pairs:                  0.5 s/pair  -> 1.25
        CPU  GRPO (30 + 18) / 96 = 0.5, DPO (6 + 2) / 24 = 1/3                       -> 1.5"""
    run = tmp_path / "run"
    benchmark_file(run, "grpo_train", 0, (500.0, 500.0))
    grpo_outputs(run, 0, 128)
    benchmark_file(run, "grpo_train", 1, (40.0, 30.0))
    grpo_outputs(run, 1, 64)
    benchmark_file(run, "dpo_train", 1, (8.0, 6.0))
    dpo_outputs(run, 1, [8, 8])
    benchmark_file(run, "verifier_judge", 1, (3.0, 3.0))
    benchmark_file(run, "dpo_build_pairs", 1, (2.0, 2.0))
    benchmark_file(run, "grpo_train", 2, (18.0, 17.0), (22.0, 19.0))
    grpo_outputs(run, 2, 32)
    benchmark_file(run, "dpo_train", 2, (4.0, 2.0))
    dpo_outputs(run, 2, [8])
    benchmark_file(run, "grpo_train", 3, (300.0, 300.0))
    grpo_outputs(run, 3, 16)
    benchmark_file(run, "dpo_train", 3, (100.0, 100.0))
    dpo_outputs(run, 3, [])
    return run


def test_dpo_vs_grpo_cost_gives_the_known_figures(run_dir, tmp_path):
    out = speed("dpo_vs_grpo_cost.py", str(run_dir), "--json", str(tmp_path / "f.json"))
    assert out.returncode == 0, out.stderr
    f = json.loads((tmp_path / "f.json").read_text())
    assert [r["iteration"] for r in f["iterations"]] == [1, 2]
    assert (f["rollouts"], f["pairs"], f["query_groups"]) == (96, 24, 12)
    w, c = f["s"], f["cpu_s"]
    assert (w["grpo"], w["dpo"], w["pair_making"]) == pytest.approx((60.0, 12.0, 5.0))
    assert (w["grpo_per_rollout"], w["dpo_per_pair"]) == pytest.approx((0.625, 0.5))
    assert w["grpo_over_dpo_per_sample"] == pytest.approx(1.25)
    assert c["grpo_over_dpo_per_sample"] == pytest.approx(1.5)
    assert w["grpo_over_dpo_per_group"] == pytest.approx(10.0)
    assert "GRPO/DPO = 1.25 (DPO 1.2x cheaper)" in out.stdout
    assert "GRPO/DPO = 1.50 (DPO 1.5x cheaper)" in out.stdout
    assert "GRPO 60.0 s, DPO 12.0 s: GRPO/DPO = 5.00" in out.stdout


def test_dpo_vs_grpo_cost_without_cpu_times_gives_wall_figures(run_dir):
    path = run_dir / "logs" / "benchmarks" / "dpo_train" / "iter2.tsv"
    path.write_text(path.read_text().replace("\t2.00\n", "\tNA\n"))  # Snakemake's NA: CPU time unreadable
    out = speed("dpo_vs_grpo_cost.py", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "GRPO/DPO = 1.25 (DPO 1.2x cheaper)" in out.stdout and "CPU:" not in out.stdout


def test_dpo_vs_grpo_cost_names_what_is_missing(tmp_path):
    benchmark_file(tmp_path, "grpo_train", 1, (1.0, 1.0))
    out = speed("dpo_vs_grpo_cost.py", str(tmp_path))
    assert out.returncode != 0
    assert "no iteration where both grpo_train and dpo_train trained" in out.stderr
    assert "logs/benchmarks/{grpo_train,dpo_train}/iter<k>.tsv" in out.stderr


def test_frame_cache_script_runs_and_its_frames_match(tmp_path):
    out = speed("frame_cache.py", "--train-videos", "2", "--bench-videos", "1", "--size", "32", "--seconds", "1",
                "--video-fps", "8")
    assert out.returncode == 0, out.stderr
    # config.yaml: 3 iterations x (media check + 2 epochs + DPO) = 12 decodes per training video, 2 per
    # benchmark video: 2 x 12 + 1 x 2, for each of the two video kinds; the ceiling is 26 / 3 entries
    assert out.stdout.count("decodes in a 3-iteration run: 26 (24 training = 12 per video, 2 evaluation)") == 2
    assert len(re.findall(r"ratio: \d+\.\dx faster with the cache \(at most 8\.7x", out.stdout)) == 2
    assert out.stdout.count("3 misses") == 2


@pytest.mark.slow
def test_eval_batching_script_answers_alike_both_ways():
    out = speed("eval_batching.py", "--benchmarks", "vsi_bench,video_mmmu", "--questions", "3", "--batch-size", "3",
                "--new", "8")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "answers identical both ways: 6/6" in out.stdout


@pytest.mark.slow
def test_readme_figures_prints_the_readmes_table_from_a_finished_run(finished_run):
    """speed/readme_figures.py RUN gives the README's "Measured" table and paragraph; each checked cell
    is the figure of the artifact it names."""
    out = speed("readme_figures.py", str(finished_run))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "|  | iter0 (activation) | iter1 | iter2 |" and lines[1] == "|---|---|---|---|"
    rows = {cells[1].strip(): [c.strip() for c in cells[2:-1]]
            for cells in (line.split("|") for line in lines[2:] if line.startswith("| "))}
    assert len(rows) == 10
    for k in range(3):
        rollouts = [json.loads(line) for line in (finished_run / f"iter{k}/grpo/rollouts.jsonl").read_text().splitlines()]
        mean = sum(r["reward_accuracy"] for r in rollouts) / len(rollouts)
        assert rows["mean accuracy reward of the GRPO rollouts"][k] == f"{mean:.3f}"
        queries = len({r["query_id"] for r in rollouts})
        assert rows["GRPO rollouts / queries, epochs (every `rollout_id` distinct unless said)"][k].startswith(
            f"{len(rollouts)} / {queries}, ")
    for k in (1, 2):
        stats = json.loads((finished_run / f"iter{k}/dpo/pair_stats.json").read_text())
        kinds = stats["by_kind"]
        assert rows["DPO pairs (consistency / penalty / reflection)"][k] == (
            f"{stats['pairs']} ({kinds['consistency']}/{kinds['penalty']}/{kinds['reflection']})")
        heldout = json.loads((finished_run / f"iter{k}/dpo/heldout.json").read_text())
        if heldout["pairs"]:
            # the same quantity before and after, side by side; the margin (a change) on its own row
            assert rows["held-out pairs (queries): chosen more likely than rejected, before -> after DPO"][k] == (
                f"{heldout['pairs']} ({heldout['queries']}): {heldout['before']['chosen_preferred']:.0%} -> "
                f"{heldout['after']['chosen_preferred']:.0%}")
    assert rows["simple queries dropped by the curriculum after the stage"][2] == ""  # the last: none written
    final = json.loads((finished_run / "iter2/eval/vsi_bench.json").read_text())
    assert (f"Final score `iter2/eval/vsi_bench.json` ({final['n']} questions): overall {final['overall']:.1f} "
            in out.stdout)
    assert f"inconsistency {final['inconsistency']['rate']:.1f}% of the evaluated responses" in out.stdout
    assert "vsi_bench along the chain: base " in out.stdout and "iter2 DPO " in out.stdout
    assert re.search(r"^Wall time: (\d+ min )?\d+ s from the first job's start", out.stdout, re.M)


def test_readme_figures_names_what_is_missing(tmp_path):
    out = speed("readme_figures.py", str(tmp_path))
    assert out.returncode != 0 and "expected iter0/grpo ... iterN/grpo" in out.stderr
