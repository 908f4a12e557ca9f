"""Synthetic data for the offline default: real mp4 videos whose answers depend on the pixels.

Each video shows 1-3 white squares moving in one direction over a coloured background. Questions
ask for the direction or the background colour (multiple choice, options in a fixed order) or the number of squares (a number, scored by MRA).
The activation stage gets text arithmetic and still images. The benchmark file uses VSI-Bench's
record format so it runs through the same loader and scorer as the real benchmark.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from veripo.prompts import MC_SUFFIX

COLORS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40)}
DIRECTIONS = ["left", "right", "up", "down"]
SQUARE = (245, 245, 245)
# The colour is the background's: a tiny vision tower learns a global colour cue within the warm-up,
# while the colour of small squares on a dark background it did not learn in minutes.


def draw_frames(direction: str, color: str, count: int, n_frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of ``count`` squares moving together."""
    sq = max(6, size // (2 + count))
    background = COLORS[color]
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    lanes = np.linspace(sq // 2, size - sq - sq // 2, count).round().astype(int) if count > 1 else [(size - sq) // 2]
    for t in range(n_frames):
        frac = t / max(n_frames - 1, 1)
        if direction in ("left", "up"):
            frac = 1.0 - frac
        travel = int(frac * (size - sq))
        img = frames[t]
        img[:] = background
        for lane in lanes:
            x, y = (travel, lane) if direction in ("left", "right") else (lane, travel)
            img[y:y + sq, x:x + sq] = SQUARE
    return frames


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    import av

    tmp = f"{path}.part.mp4"
    with av.open(tmp, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # x264's assembly (asm=0 turns it off) made bytes that varied inside one process: the same yuv
        # frames, encoded 40 times between other videos, gave 10 different files, on one encoder
        # thread too; with asm off, or mbtree off, always one. So two runs with one seed wrote different
        # videos and trained different warm-ups. The C paths cost nothing at these sizes (60 videos:
        # 1.1 s against 0.9 s).
        stream.options = {"crf": "18", "x264-params": "asm=0"}
        for img in frames:
            # Converted to yuv420p here, not by encode(), so the conversion is one we name and control.
            yuv = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p").to_ndarray()
            for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _mc(rng: random.Random, question: str, correct: str, pool: list[str]) -> dict:
    # Options keep the pool's order: a 2-layer model learned to see the answer within the warm-up,
    # but not to look up its letter in shuffled options.
    opts = list(pool)
    letters = "ABCD"
    options = [f"{letters[i]}. {o}" for i, o in enumerate(opts)]
    return {"question": question + "\n" + "\n".join(options), "options": options,
            "answer": letters[opts.index(correct)], "answer_type": "multiple_choice", "answer_text": correct}


def video_question(rng: random.Random, task: str, scene: dict) -> dict:
    if task == "direction":
        return _mc(rng, "Which direction do the squares move?", scene["direction"], DIRECTIONS)
    if task == "color":
        return _mc(rng, "What colour is the background?", scene["color"], list(COLORS))
    if task == "count":
        return {"question": "How many squares are in this video?", "options": None,
                "answer": str(scene["count"]), "answer_type": "numeric", "answer_text": str(scene["count"])}
    raise ValueError(f"unknown synthetic task {task!r}")


def make_scene(rng: random.Random) -> dict:
    return {"direction": rng.choice(DIRECTIONS), "color": rng.choice(list(COLORS)), "count": rng.randint(1, 3)}


def make_video_set(out_dir: str | os.PathLike, n: int, seed: int, tasks: list[str], size: int,
                   fps: int, seconds: float, prefix: str = "v") -> list[dict]:
    """Write ``n`` videos under ``out_dir/videos`` and return one query record per video."""
    rng = random.Random(seed)
    vdir = Path(out_dir) / "videos"
    vdir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        scene = make_scene(rng)
        task = tasks[i % len(tasks)]
        name = f"{prefix}{i:04d}.mp4"
        write_mp4(vdir / name, draw_frames(scene["direction"], scene["color"], scene["count"],
                                           int(round(fps * seconds)), size), fps)
        q = video_question(rng, task, scene)
        records.append({"id": f"{prefix}{i:04d}", "video": f"videos/{name}", "task": task, **q})
    return records


def make_activation_set(out_dir: str | os.PathLike, n: int, seed: int, size: int) -> list[dict]:
    """Half text arithmetic (numeric answers), half still-image colour questions (multiple choice)."""
    from PIL import Image

    rng = random.Random(seed)
    idir = Path(out_dir) / "images"
    idir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            records.append({"id": f"a{i:04d}", "task": "arithmetic", "question": f"What is {a} plus {b}?",
                            "options": None, "answer": str(a + b), "answer_type": "numeric",
                            "answer_text": str(a + b)})
        else:
            scene = make_scene(rng)
            frame = draw_frames(scene["direction"], scene["color"], scene["count"], 2, size)[0]
            name = f"a{i:04d}.png"
            Image.fromarray(frame).save(idir / name)
            q = _mc(rng, "What colour is the background of the image?", scene["color"], list(COLORS))
            records.append({"id": f"a{i:04d}", "task": "image_color", "image": f"images/{name}", **q})
    return records


def make_vsi_style_benchmark(out_dir: str | os.PathLike, n: int, seed: int, size: int, fps: int,
                             seconds: float) -> list[dict]:
    """Records in VSI-Bench's format (``video_path`` relative to ``out_dir``), with VSI-style wording
    so the category rules apply: counting (numeric) and relative direction (multiple choice)."""
    rng = random.Random(seed)
    vdir = Path(out_dir) / "videos"
    vdir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        scene = make_scene(rng)
        if i % 2 == 1:
            scene["direction"] = rng.choice(["left", "right"])  # the question offers left/right only
        name = f"b{i:04d}.mp4"
        write_mp4(vdir / name, draw_frames(scene["direction"], scene["color"], scene["count"],
                                           int(round(fps * seconds)), size), fps)
        rec = {"question_id": f"vsi_bench_{i}", "scene_name": f"b{i:04d}", "video_path": f"videos/{name}"}
        if i % 2 == 0:
            q = "How many squares are in this video?"
            rec.update(question=q, answer=str(scene["count"]), processed_question=q)
        else:
            q = ("If I am standing by the camera and facing the scene, do the squares move to my "
                 "left or the right?")
            mc = _mc(rng, q, scene["direction"], DIRECTIONS)
            rec.update(question=q, answer=mc["answer"], options=mc["options"],
                       processed_question=mc["question"] + MC_SUFFIX)
        records.append(rec)
    return records


def reasoning_trace(record: dict, kind: str, rng: random.Random) -> str:
    """A ``<think>..</think><answer>..</answer>`` response of one ``kind``.

    right: correct observation and answer; wrong: a consistent wrong answer; inconsistent: the think
    concludes one answer and ``<answer>`` gives another; repetitive: a looping think.
    """
    task = record.get("task", "")
    noun = {"direction": "The squares move {}.", "color": "The background is {}.",
            "image_color": "The background is {}.", "count": "I count {} squares.",
            "arithmetic": "Adding the two numbers gives {}."}.get(task, "I observe {}.")

    def label(value: str) -> str:
        if record["answer_type"] == "multiple_choice":
            letter = next(o.split(".")[0] for o in record["options"] if o.split(". ", 1)[1] == value)
            return letter
        return value

    def wrong_value() -> str:
        if record["answer_type"] == "multiple_choice":
            pool = [o.split(". ", 1)[1] for o in record["options"]]
            return rng.choice([p for p in pool if p != record["answer_text"]])
        gold = int(float(record["answer"]))
        return str(rng.choice([v for v in range(max(0, gold - 3), gold + 4) if v != gold]))

    right, wrong = record["answer_text"], wrong_value()
    if kind == "right":
        seen, concl, ans = right, label(right), label(right)
    elif kind == "wrong":
        seen, concl, ans = wrong, label(wrong), label(wrong)
    elif kind == "inconsistent":
        seen, concl, ans = right, label(right), label(wrong)
        if rng.random() < 0.5:
            seen, concl, ans = wrong, label(wrong), label(right)
    elif kind == "repetitive":
        seen, concl, ans = right, label(right), label(right)
        loop = " ".join([noun.format(seen)] * rng.randint(4, 6))
        return f"<think>{loop} So the answer is {concl}.</think><answer>${ans}$</answer>"
    else:
        raise ValueError(f"unknown trace kind {kind!r}")
    return f"<think>{noun.format(seen)} So the answer is {concl}.</think><answer>${ans}$</answer>"


def vocabulary_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: every word the synthetic tasks and traces use."""
    rng = random.Random(0)
    lines = []
    for _ in range(200):
        scene = make_scene(rng)
        for task in ("direction", "color", "count"):
            rec = {"task": task, **video_question(rng, task, scene)}
            lines.append(rec["question"])
            for kind in ("right", "wrong", "inconsistent", "repetitive"):
                lines.append(reasoning_trace(rec, kind, rng))
    for a in range(1, 10):
        for b in range(1, 10):
            lines.append(f"What is {a} plus {b}? Adding the two numbers gives {a + b}.")
    lines.append("If I am standing by the camera and facing the scene, do the squares move to my left or the right?")
    lines.append("What colour is the background of the image?" + MC_SUFFIX)
    return lines
