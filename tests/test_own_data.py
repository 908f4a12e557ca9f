"""Own data on the tiny model, end to end on CPU: a Video-R1-style file (videos and images, several problem
types and sources) imported with filters and a subsample, its images routed to the activation stage, and
the chain trained through iteration 1's DPO with the synthetic data off (the tiny base's warm-up traces
are still made)."""
import copy
import json
from pathlib import Path

from conftest import jsonl, small_config, snakemake
from veripo.data import synthetic
from veripo.data.queries import load_queries

COLORS = list(synthetic.COLORS)


def write_video_r1(root: Path) -> list[dict]:
    """Media the project draws (mp4 videos, png images) and a Video-R1 JSON list naming them: 8 video and
    6 image questions of two scorable problem types, plus records the filters leave out."""
    from PIL import Image

    (root / "media/videos").mkdir(parents=True)
    (root / "media/images").mkdir(parents=True)
    records = []

    def add(data_type: str, problem_type: str, question: str, answer: str, options=(), source="SynthClips"):
        i = len(records)
        path = f"./videos/v{i}.mp4" if data_type == "video" else f"./images/i{i}.png"
        records.append({"problem_id": i, "problem": question, "options": list(options),
                        "solution": f"<answer>{answer}</answer>", "problem_type": problem_type,
                        "data_type": data_type, "path": path, "data_source": source})
        return root / "media" / path

    for i in range(8):
        color, count, direction = COLORS[i % 4], 1 + i % 3, synthetic.DIRECTIONS[i % 4]
        frames = synthetic.draw_frames(direction, color, count, 8, 64)
        if i % 2 == 0:
            options = [f"{letter}. {c}" for letter, c in zip("ABCD", COLORS)]
            path = add("video", "multiple choice", "What colour is the background?", "ABCD"[i % 4], options)
        else:
            path = add("video", "numerical", "How many squares are in this video?", str(count))
        synthetic.write_mp4(path, frames, fps=8)
    for i in range(6):
        color = COLORS[i % 4]
        options = [f"{letter}. {c}" for letter, c in zip("ABCD", COLORS)]
        path = add("image", "multiple choice", "What colour is the background of the image?", "ABCD"[i % 4],
                   options, source="SynthStills")
        Image.fromarray(synthetic.draw_frames("left", color, 1, 2, 64)[0]).save(path)
    # left out by the filters: a problem type we cannot score, a source not asked for
    add("video", "OCR", "What does the sign say?", "STOP")
    add("video", "numerical", "How many squares are in this video?", "2", source="Elsewhere")
    (root / "Video-R1-mini.json").write_text(json.dumps(records))
    return records


def test_own_video_r1_data_trains_through_iteration_1_on_the_tiny_model(tmp_path, default_config):
    write_video_r1(tmp_path)
    cfg = small_config(default_config, iterations=1)
    # short: what is tested is that own data flows through every stage (60 warm-up steps still leave a base
    # whose rollouts give DPO pairs), not how well it trains
    cfg["warmup"]["steps"] = 60
    cfg["data"]["synthetic"]["enabled"] = False
    cfg["data"].update(
        train_video="data/imported/vr1.jsonl", train_activation="data/imported/vr1.activation.jsonl",
        imports={"vr1": {"source": "Video-R1-mini.json", "format": "video_r1", "media_root": "media",
                         "problem_types": ["multiple choice", "numerical"],
                         "data_sources": ["SynthClips", "SynthStills"], "max_records": 12, "seed": 0}})

    # without benchmark files the evaluation says what is missing, before anything runs
    out = snakemake(tmp_path, cfg, "-n", "iter1/eval/vsi_bench.json")
    assert out.returncode != 0
    assert "config key 'eval.benchmarks.vsi_bench.questions': data/bench/vsi_bench.json does not exist" in (
        out.stdout + out.stderr)

    out = snakemake(tmp_path, cfg, "iter1/dpo/model", timeout=600)
    assert out.returncode == 0, out.stderr[-5000:]

    stats = json.loads((tmp_path / "data/imported/vr1.stats.json").read_text())
    assert stats["left_out"] == {"problem_type": 1, "data_source": 1}
    assert (stats["records"], stats["converted"], stats["subsampled_out"], stats["rejected"]) == (16, 12, 2, 0)
    video = load_queries(str(tmp_path / "data/imported/vr1.jsonl"))
    activation = load_queries(str(tmp_path / "data/imported/vr1.activation.jsonl"))
    assert len(video) + len(activation) == 12 and video and activation
    assert all("video" in q for q in video) and all("image" in q for q in activation)

    # iteration 0 (activation) trained on the imported images, iteration 1 on the imported videos
    stage0 = jsonl(tmp_path / "iter0/grpo/rollouts.jsonl")
    stage1 = jsonl(tmp_path / "iter1/grpo/rollouts.jsonl")
    assert {r["query_id"] for r in stage0} == {q["id"] for q in activation}
    assert {r["query_id"] for r in stage1} <= {q["id"] for q in video}
    assert {r["stage"] for r in stage0} == {"activation"} and {r["stage"] for r in stage1} == {"video"}
    # DPO learned from pairs of the imported videos' rollouts (not a skipped stage re-saving the GRPO model)
    pairs = jsonl(tmp_path / "iter1/dpo/pairs.jsonl")
    assert pairs and {p["query_id"] for p in pairs} <= {q["id"] for q in video}
    assert jsonl(tmp_path / "iter1/dpo/metrics.jsonl") and (tmp_path / "iter1/dpo/model/config.json").exists()

    # the synthetic data wrote the tiny base's warm-up traces alone: no training set, no benchmark
    assert len(jsonl(tmp_path / "data/warmup.jsonl")) > 0 and (tmp_path / "base/model/config.json").exists()
    assert not (tmp_path / "data/train_video.jsonl").exists() and not (tmp_path / "data/bench").exists()

    # asked for, the synthetic benchmarks give the evaluation its question files
    cfg = copy.deepcopy(cfg)
    cfg["data"]["synthetic"]["keep"] = ["benchmarks"]
    out = snakemake(tmp_path, cfg, "-n", "iter1/eval/vsi_bench.json")
    assert out.returncode == 0, out.stderr[-3000:]
