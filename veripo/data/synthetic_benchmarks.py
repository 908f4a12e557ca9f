"""Synthetic question files in the six evaluation formats, for the offline default.

Each writer reproduces one benchmark's record format and quirks (docs BENCHMARKS.md) over synthetic
videos from ``veripo.data.synthetic``: squares moving in one direction over a coloured background, so each
answer (direction, background colour, number of squares) can only be read off the video. Videos go
under the benchmark's own folder layout below ``out_dir``, the video root the records are relative to.
"""
from __future__ import annotations

import base64
import io
import random
from pathlib import Path
from typing import Callable

from veripo.data import synthetic
from veripo.prompts import MC_SUFFIX

LETTERS = "ABCDEFG"
QUESTIONS = {
    "direction": "Which direction do the squares move?",
    "color": "What colour is the background?",
    "count": "How many squares are in this video?",
}
TASKS = tuple(QUESTIONS)


def _write_video(out_dir: Path, rel_path: str, scene: dict, size: int, fps: int, seconds: float) -> str:
    path = out_dir / rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = synthetic.draw_frames(scene["direction"], scene["color"], scene["count"], int(round(fps * seconds)), size)
    synthetic.write_mp4(path, frames, fps)
    return rel_path


def _truth(task: str, scene: dict) -> str:
    return str(scene["count"]) if task == "count" else scene[task]


def _pool(task: str, extra: list[str] = ()) -> list[str]:
    base = {"direction": synthetic.DIRECTIONS, "color": list(synthetic.COLORS), "count": ["1", "2", "3", "4"]}[task]
    return list(base) + list(extra)


def _choices(rng: random.Random, correct: str, pool: list[str], k: int) -> tuple[list[str], str]:
    """``k`` shuffled options including ``correct``; returns (options, letter of the correct one)."""
    options = rng.sample([p for p in pool if p != correct], k - 1) + [correct]
    rng.shuffle(options)
    return options, LETTERS[options.index(correct)]


def video_mme(out_dir: Path, n: int, rng: random.Random, video: dict) -> list[dict]:
    """Ids ``NNN-k`` (video number, question number); 001-300 short, 301-600 medium, 601-900 long
    (longer clips); options written "A. A. Left." inside processed_question, then the suffix."""
    durations = ((1, 1.0), (301, 1.5), (601, 2.0))
    records: list[dict] = []
    v = 0
    while len(records) < n:
        first, stretch = durations[v % 3]
        number = first + v // 3
        scene = synthetic.make_scene(rng)
        rel = _write_video(out_dir, f"Video-MME/videos/syn{number:03d}.mp4", scene, video["size"], video["fps"],
                           video["seconds"] * stretch)
        for k, task in enumerate(TASKS[: n - len(records)], 1):
            options, answer = _choices(rng, _truth(task, scene), _pool(task), 4)
            lines = [f"{L}. {L}. {o.capitalize()}." for L, o in zip(LETTERS, options)]
            records.append({"question_id": f"{number:03d}-{k}", "video_path": rel, "question": QUESTIONS[task],
                            "answer": answer,
                            "processed_question": "\n".join([QUESTIONS[task], *lines]) + MC_SUFFIX})
        v += 1
    return records


def lvbench(out_dir: Path, n: int, rng: random.Random, video: dict) -> list[dict]:
    """Numeric-string ids, two questions per video, options "(A) ..." inside the question, no suffix."""
    records = []
    for i in range(n):
        if i % 2 == 0:
            scene = synthetic.make_scene(rng)
            rel = _write_video(out_dir, f"LVBench/syn{i // 2:04d}.mp4", scene, **video)
        task = TASKS[i % 2 + (i // 2) % 2]
        options, answer = _choices(rng, _truth(task, scene), _pool(task), 4)
        text = "\n".join([QUESTIONS[task], *(f"({L}) {o}" for L, o in zip(LETTERS, options))])
        records.append({"question_id": str(7000 + i), "video_path": rel, "question": text, "answer": answer,
                        "processed_question": text})
    return records


_MOTIONS = ["Moving left.", "Moving right.", "Moving up.", "Moving down.", "Not moving at all.",
            "Moving left then right.", "Moving up then down."]
_NUMBERS = ["One.", "Two.", "Three.", "Four.", "Five.", "Six.", "Seven."]


def tomato(out_dir: Path, n: int, rng: random.Random, video: dict) -> list[dict]:
    """Videos under human/object/simulated, 3-7 options, no suffix; every other video carries two
    questions under the same question_id (TOMATO repeats ids), told apart only by their text."""
    folders = ("human", "object", "simulated")
    records: list[dict] = []
    v = 0
    while len(records) < n:
        scene = synthetic.make_scene(rng)
        qid = f"{v:04d}-00"
        rel = _write_video(out_dir, f"TOMATO/videos/{folders[v % 3]}/{qid}.mp4", scene, **video)
        asked = [("Which direction do the squares move?", f"Moving {scene['direction']}.", _MOTIONS),
                 ("How many squares move in the video?", _NUMBERS[scene["count"] - 1], _NUMBERS)]
        for question, correct, pool in asked[: 2 if v % 2 == 0 else 1][: n - len(records)]:
            options, answer = _choices(rng, correct, pool, rng.randint(3, 7))
            lines = [f"{L}. {o}" for L, o in zip(LETTERS, options)]
            records.append({"question_id": qid, "question": question, "video_path": rel, "answer": answer,
                            "processed_question": "\n".join([question, *lines])})
        v += 1
    return records


_SUBJECTS = {"direction": "Physics", "color": "Art", "count": "Mathematics"}


def mmvu(out_dir: Path, n: int, rng: random.Random, video: dict) -> list[dict]:
    """Ids ``validation_<n>``, videos under a subject folder (the category), five options A-E."""
    extra = {"direction": ["not moving"], "color": ["purple"], "count": ["5"]}
    records = []
    for i in range(n):
        task = TASKS[i % 3]
        scene = synthetic.make_scene(rng)
        rel = _write_video(out_dir, f"MMVU/videos/{_SUBJECTS[task]}/{i // 3}.mp4", scene, **video)
        options, answer = _choices(rng, _truth(task, scene), _pool(task, extra[task]), 5)
        lines = [f"{L}. {o}" for L, o in zip(LETTERS, options)]
        records.append({"question_id": f"validation_{i}", "video_path": rel, "question": QUESTIONS[task],
                        "answer": answer,
                        "processed_question": "\n".join([QUESTIONS[task], *lines]) + MC_SUFFIX})
    return records


def _png_base64(scene: dict, size: int) -> str:
    from PIL import Image

    frame = synthetic.draw_frames(scene["direction"], scene["color"], scene["count"], 2, size)[0]
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _half(count: int) -> str:
    return str(count // 2) if count % 2 == 0 else f"\\frac{{{count}}}{{2}}"


def video_mmmu(out_dir: Path, n: int, rng: random.Random, video: dict) -> list[dict]:
    """VideoMMMU's record format: ``category`` Perception (options, letter answers), Comprehension
    (math answers: a number or a LaTeX fraction), Adaptation (an extra base64 PNG ``image``)."""
    subjects = ("Physics", "Art", "Math")
    records = []
    for i in range(n):
        subject = subjects[i % 3]
        scene = synthetic.make_scene(rng)
        rel = _write_video(out_dir, f"VideoMMMU/videos/{subject}/{i}.mp4", scene, **video)
        rec = {"question_id": f"validation_{subject}_{i}", "video_path": rel}
        kind = ("Perception", "Comprehension", "Adaptation")[i % 3]
        if kind == "Perception":
            task = ("direction", "color")[(i // 3) % 2]
            options, answer = _choices(rng, _truth(task, scene), _pool(task), 4)
            lines = [f"{L}. {o}" for L, o in zip(LETTERS, options)]
            rec.update(question=QUESTIONS[task], answer=answer, options=lines,
                       processed_question="\n".join([QUESTIONS[task], *lines]) + MC_SUFFIX)
        elif kind == "Comprehension":
            question = ("How many squares are in this video? Each square weighs half a kilogram: what is their "
                        "total weight in kilograms?")
            rec.update(question=question, answer=_half(scene["count"]), processed_question=question)
        else:
            other = synthetic.make_scene(rng)
            question = "The image is a frame of another clip. How many squares are in the video and the image together?"
            rec.update(question=question, answer=str(scene["count"] + other["count"]), processed_question=question,
                       image=_png_base64(other, video["size"]))
        rec["category"] = kind
        records.append(rec)
    return records


WRITERS: dict[str, Callable[[Path, int, random.Random, dict], list[dict]]] = {
    "video_mme": video_mme, "lvbench": lvbench, "tomato": tomato, "mmvu": mmvu, "video_mmmu": video_mmmu,
}


def write_benchmark(name: str, out_dir: str, n: int, seed: int, size: int, fps: int, seconds: float) -> list[dict]:
    """Write ``n`` questions' videos under ``out_dir`` and return the question records of ``name``.

    vsi_bench is veripo.data.synthetic's VSI-Bench-format set (counting and left/right questions)."""
    if name == "vsi_bench":
        return synthetic.make_vsi_style_benchmark(out_dir, n, seed, size, fps, seconds)
    if name not in WRITERS:
        raise ValueError(f"no synthetic writer for benchmark {name!r}; expected vsi_bench or {', '.join(WRITERS)}")
    return WRITERS[name](Path(out_dir), n, random.Random(seed), {"size": size, "fps": fps, "seconds": seconds})
