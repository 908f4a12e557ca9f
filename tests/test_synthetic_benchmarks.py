"""The synthetic benchmarks: each in its benchmark's real format, and every answer read off the video."""
import collections
import re

import numpy as np
import pytest

from veripo import jsonio

from veripo.data import synthetic

from veripo.data import synthetic_benchmarks

from veripo.media import decode as video
from veripo.eval.benchmarks import BENCHMARKS, load_benchmark
from veripo.prompts import MC_SUFFIX as OPTION_SUFFIX
from veripo.media.checks import decode_inline_image, find_media_problems

SIZES = {"vsi_bench": 6, "video_mme": 7, "lvbench": 6, "tomato": 9, "mmvu": 6, "video_mmmu": 6}
OPTION = re.compile(r"^\(?([A-G])[.)] (?:[A-G]\. )?(.+?)\.?$")
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = {}
    for seed, name in enumerate(BENCHMARKS):
        records = synthetic_benchmarks.write_benchmark(name, str(root), SIZES[name], seed, size=64, fps=8, seconds=1.5)
        jsonio.write_json(root / f"{name}.json", records)
        out[name] = (records, load_benchmark(name, root / f"{name}.json"))
    return root, out


def measure(path: str) -> dict:
    """Direction, background colour and number of squares, measured on the decoded video."""
    frames = video.decode_video(path, fps=8.0, max_frames=64).frames.astype(int)
    first, last = frames[0], frames[-1]
    corner = first[0, 0]
    color = min(synthetic.COLORS, key=lambda c: np.abs(np.array(synthetic.COLORS[c]) - corner).sum())
    bright = [f.min(-1) > 200 for f in (first, last)]
    (y0, x0), (y1, x1) = (np.argwhere(b).mean(0) for b in bright)
    if abs(x1 - x0) > abs(y1 - y0):
        direction, lanes = ("right" if x1 > x0 else "left"), bright[0].any(1)
    else:
        direction, lanes = ("down" if y1 > y0 else "up"), bright[0].any(0)
    count = int(np.sum(lanes[1:] & ~lanes[:-1]) + lanes[0])
    return {"direction": direction, "color": color, "count": count}


def gold_option(question: dict) -> str:
    text = question["raw"].get("processed_question") or question["raw"]["question"]
    options = dict(m.groups() for m in map(OPTION.match, text.removesuffix(OPTION_SUFFIX).splitlines()[1:]) if m)
    return options[question["answer"]].lower()


def test_every_answer_is_read_off_the_video(written):
    root, out = written
    checked = collections.Counter()
    for name, (_, questions) in out.items():
        for q in questions:
            truth = measure(str(root / q["video_path"]))
            if q["answer_type"] == "multiple_choice":
                gold = gold_option(q)
                if "direction" in q["question"] or "move to my" in q["question"]:
                    assert truth["direction"] in gold, (name, q["key"])
                elif "colour" in q["question"]:
                    assert gold == truth["color"], (name, q["key"])
                else:
                    number = WORDS.get(gold) or int(gold)
                    assert number == truth["count"], (name, q["key"])
            elif "image" in q["raw"]:
                other = decode_inline_image(q["raw"]["image"], q["key"])
                assert other.size == (64, 64)
                assert int(q["answer"]) > truth["count"]
            elif "half" in q["question"]:
                assert q["answer"] in (f"\\frac{{{truth['count']}}}{{2}}", str(truth["count"] // 2)), q["key"]
            else:
                assert int(q["answer"]) == truth["count"], (name, q["key"])
            checked[name] += 1
    assert checked == SIZES


def test_formats_and_quirks(written):
    root, out = written
    for name, (records, questions) in out.items():
        assert len(questions) == SIZES[name] and not find_media_problems(questions, str(root)), name
    mme = out["video_mme"][1]
    assert re.fullmatch(r"\d{3}-\d", mme[0]["key"]) and {q["category"] for q in mme} == {"short", "medium", "long"}
    assert re.search(r"\nA\. A\. \w+", mme[0]["raw"]["processed_question"])
    assert mme[0]["raw"]["processed_question"].endswith(OPTION_SUFFIX)
    lv = out["lvbench"][1]
    assert "\n(A) " in lv[0]["question"] and lv[0]["raw"]["processed_question"] == lv[0]["raw"]["question"]
    assert {q["category"] for q in lv} == {None}
    tomato_records, tomato = out["tomato"]
    ids = collections.Counter(r["question_id"] for r in tomato_records)
    assert max(ids.values()) == 2 and len({q["key"] for q in tomato}) == len(tomato)
    assert {q["category"] for q in tomato} == {"human", "object", "simulated"}
    n_options = [len(q["question"].splitlines()) - 1 for q in tomato]
    assert min(n_options) >= 3 and max(n_options) <= 7
    mmvu = out["mmvu"][1]
    assert [q["key"] for q in mmvu[:2]] == ["validation_0", "validation_1"]
    assert {q["category"] for q in mmvu} == {"Physics", "Art", "Mathematics"}
    assert all(q["video_path"].startswith(f"MMVU/videos/{q['category']}/") for q in mmvu)
    mmmu_records, mmmu = out["video_mmmu"]
    assert {q["category"] for q in mmmu} == {"Perception", "Comprehension", "Adaptation"}
    assert {q["answer_type"] for q in mmmu} == {"multiple_choice", "math"}
    assert any(r.get("image") for r in mmmu_records) and any("\\frac" in q["answer"] for q in mmmu)
    vsi = out["vsi_bench"][1]
    assert {q["category"] for q in vsi} == {"object_counting", "object_rel_direction_easy"}


def test_unknown_benchmark(tmp_path):
    with pytest.raises(ValueError, match="no synthetic writer for benchmark 'mvbench'"):
        synthetic_benchmarks.write_benchmark("mvbench", str(tmp_path), 2, 0, 32, 4, 1.0)
