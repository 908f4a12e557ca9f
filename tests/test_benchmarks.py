from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from veripo.eval.benchmarks import BENCHMARKS, load_benchmark
from veripo.prompts import MC_SUFFIX as OPTION_SUFFIX

from veripo import jsonio

# Only synthetic question files are committed (video_mmmu.json: four hand-written VideoMMMU-format

from veripo.data import synthetic_benchmarks
# records). The real public question files are fetched data: the ``real_benchmark`` fixture
# (conftest.py) finds them in ../shared/veripo-data/ or $VERIPO_DATA, and skips where they are absent.
DATA = Path(__file__).parent / "data" / "benchmarks"
SYNTHETIC_SIZES = {"vsi_bench": 4, "video_mme": 9, "lvbench": 4, "tomato": 9, "mmvu": 6, "video_mmmu": 6}


def write(tmp_path: Path, obj: object, name: str = "bench.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture(scope="module")
def real(real_benchmark):
    """``real(name)``: the loaded real question file of ``name`` (skips when absent)."""
    return lambda name: load_benchmark(name, real_benchmark(name))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, list[dict]]:
    """Every benchmark's synthetic question file (veripo.data.synthetic_benchmarks), loaded; these tests
    run without the real files."""
    root = tmp_path_factory.mktemp("synthetic_bench")
    out = {}
    for seed, name in enumerate(BENCHMARKS):
        records = synthetic_benchmarks.write_benchmark(name, str(root), SYNTHETIC_SIZES[name], seed, 32, 4, 0.5)
        jsonio.write_json(root / f"{name}.json", records)
        out[name] = load_benchmark(name, root / f"{name}.json")
    return out


def test_vsi_bench_categories_match_the_documented_counts(real):
    records = real("vsi_bench")
    assert len(records) == 5130
    assert collections.Counter(r["category"] for r in records) == {
        "object_counting": 565,
        "object_size_estimation": 953,
        "room_size_estimation": 288,
        "object_abs_distance": 834,
        "object_rel_distance": 710,
        "obj_appearance_order": 618,
        "route_planning": 194,
        "object_rel_direction_easy": 217,
        "object_rel_direction_medium": 378,
        "object_rel_direction_hard": 373,
    }
    assert collections.Counter(r["answer_type"] for r in records) == {"multiple_choice": 2490, "numeric": 2640}
    assert len({r["video_path"] for r in records}) == 288
    assert [r["key"] for r in records] == [r["question_id"] for r in records]


def test_vsi_bench_record_is_normalised(real):
    record = next(r for r in real("vsi_bench") if r["question_id"] == "vsi_bench_1837")
    assert record["video_path"] == "VSI-Bench/scannetpp/3e8bba0176.mp4"
    assert record["answer"] == "C"
    assert record["answer_type"] == "multiple_choice"
    assert record["category"] == "object_rel_direction_hard"
    assert record["options"] == ["A. front-left", "B. back-right", "C. front-right", "D. back-left"]
    assert record["question"] == record["raw"]["processed_question"].removesuffix(OPTION_SUFFIX)
    assert record["question"].endswith("\nD. back-left")
    assert record["raw"]["scene_name"] == "3e8bba0176"


def test_vsi_bench_numeric_record(real):
    record = real("vsi_bench")[0]
    assert record["question_id"] == "vsi_bench_78"
    assert (record["answer"], record["answer_type"], record["category"]) == ("2", "numeric", "object_counting")
    assert record["options"] is None
    assert record["question"] == "How many table(s) are in this room?"


def test_synthetic_vsi_bench_records_are_normalised(synthetic):
    counting, direction = synthetic["vsi_bench"][:2]
    assert (counting["answer_type"], counting["category"], counting["options"]) == ("numeric", "object_counting", None)
    assert counting["question"] == "How many squares are in this video?"
    assert (direction["answer_type"], direction["category"]) == ("multiple_choice", "object_rel_direction_easy")
    assert direction["question"] == direction["raw"]["processed_question"].removesuffix(OPTION_SUFFIX)
    assert direction["question"].endswith("\n" + direction["options"][-1])
    assert [r["key"] for r in synthetic["vsi_bench"]] == [r["question_id"] for r in synthetic["vsi_bench"]]


@pytest.mark.parametrize("name", [name for name in BENCHMARKS if name != "video_mmmu"])
def test_no_real_question_keeps_the_option_suffix(real, name):
    for record in real(name):
        assert not record["question"].endswith(OPTION_SUFFIX), (name, record["key"])


def test_no_synthetic_question_keeps_the_option_suffix(synthetic):
    committed = load_benchmark("video_mmmu", DATA / "video_mmmu.json")
    assert any(r["raw"].get("processed_question", "").endswith(OPTION_SUFFIX) for r in committed)
    for name, records in [*synthetic.items(), ("video_mmmu.json", committed)]:
        assert records and any(r["raw"].get("processed_question") for r in records), name
        for record in records:
            assert not record["question"].endswith(OPTION_SUFFIX), (name, record["key"])


def test_video_mme_duration_from_id_range(real):
    records = real("video_mme")
    assert len(records) == 2700
    by_video = {r["question_id"].split("-")[0]: r["category"] for r in records}
    assert by_video == {f"{n:03d}": ("short", "medium", "long")[(n - 1) // 300] for n in range(1, 901)}
    assert {v: by_video[v] for v in ("001", "002", "003", "300", "301", "302", "600", "601", "602", "900")} == {
        "001": "short", "002": "short", "003": "short", "300": "short",
        "301": "medium", "302": "medium", "600": "medium",
        "601": "long", "602": "long", "900": "long",
    }
    first = records[0]
    assert first["key"] == "001-1"
    assert first["question"].endswith("\nD. D. The three kinds are of the same number.")
    assert all(r["answer_type"] == "multiple_choice" for r in records)


def test_video_mme_duration_boundaries(tmp_path, synthetic):
    ids = ["001-1", "300-3", "301-1", "600-2", "601-1", "900-3"]
    base = {"video_path": "Video-MME/videos/x.mp4", "question": "Q?", "processed_question": "Q?\nA. A. x.",
            "answer": "A"}
    records = load_benchmark("video_mme", write(tmp_path, [base | {"question_id": i} for i in ids]))
    assert [(r["key"], r["category"]) for r in records] == [
        ("001-1", "short"), ("300-3", "short"), ("301-1", "medium"),
        ("600-2", "medium"), ("601-1", "long"), ("900-3", "long"),
    ]
    expected = {"001": "short", "301": "medium", "601": "long"}
    assert {r["question_id"].split("-")[0]: r["category"] for r in synthetic["video_mme"]} == expected
    assert all(r["answer_type"] == "multiple_choice" for r in synthetic["video_mme"])


def test_lvbench_has_no_category_and_no_suffix(real):
    records = real("lvbench")
    assert len(records) == 1549
    assert {r["category"] for r in records} == {None}
    assert all(r["question"] == r["raw"]["question"] for r in records)
    assert records[0]["key"] == "5052"
    assert "\n(A) " in records[0]["question"]


def test_synthetic_lvbench_has_no_category_and_no_suffix(synthetic):
    records = synthetic["lvbench"]
    assert {r["category"] for r in records} == {None}
    assert all(r["question"] == r["raw"]["question"] for r in records)
    assert all("\n(A) " in r["question"] for r in records)


def test_tomato_repeated_ids_get_position_suffix(real):
    records = real("tomato")
    keys = [r["key"] for r in records]
    assert len(set(keys)) == len(records) == 1484
    assert keys[8] == "0621-00#8" and keys[1327] == "0621-00#1327"
    assert keys[405:408] == ["0879-00#405", "0879-00#406", "0879-00#407"]
    assert keys[0] == "0215-06"
    assert records[8]["question_id"] == records[1327]["question_id"] == "0621-00"
    assert records[8]["question"] != records[1327]["question"]
    assert collections.Counter(r["category"] for r in records) == {"human": 595, "object": 656, "simulated": 233}


def test_synthetic_tomato_repeated_ids_get_position_suffix(synthetic):
    records = synthetic["tomato"]
    keys = [r["key"] for r in records]
    assert len(set(keys)) == len(records) == 9
    assert keys[:3] == ["0000-00#0", "0000-00#1", "0001-00"]
    assert records[0]["question"] != records[1]["question"]
    for pos, record in enumerate(records):
        repeated = sum(r["question_id"] == record["question_id"] for r in records) > 1
        assert record["key"] == (f"{record['question_id']}#{pos}" if repeated else record["question_id"])
    assert {r["category"] for r in records} == {"human", "object", "simulated"}
    assert all(r["category"] == r["video_path"].split("/")[2] for r in records)


def test_mmvu_category_is_subject_folder(real):
    records = real("mmvu")
    assert records[0]["key"] == "validation_1"
    assert records[0]["category"] == "Chemistry"
    assert all(r["category"] == r["video_path"].split("/")[2] for r in records)
    assert {r["answer"] for r in records} <= set("ABCDE")


def test_synthetic_mmvu_category_is_subject_folder(synthetic):
    records = synthetic["mmvu"]
    assert records[0]["key"] == "validation_0"
    assert all(r["category"] == r["video_path"].split("/")[2] for r in records)
    assert {r["answer"] for r in records} <= set("ABCDE")


def test_video_mmmu_math_answers_and_images():
    records = load_benchmark("video_mmmu", str(DATA / "video_mmmu.json"))
    assert [(r["answer_type"], r["category"]) for r in records] == [
        ("multiple_choice", "Perception"),
        ("math", "Comprehension"),
        ("math", "Adaptation"),
        ("math", None),
    ]
    assert records[0]["question"].endswith("\nD. Gothic")
    assert records[2]["raw"]["image"].startswith("iVBOR")


def test_numeric_answers_are_strings(tmp_path):
    record = {"question_id": "q", "video_path": "v.mp4", "question": "How many chairs?", "answer": 3}
    [loaded] = load_benchmark("vsi_bench", write(tmp_path, [record]))
    assert (loaded["answer"], loaded["answer_type"], loaded["question"]) == ("3", "numeric", "How many chairs?")


def test_question_falls_back_to_question_field(tmp_path):
    base = {"question_id": "q", "video_path": "LVBench/a.mp4", "question": "Q?\n(A) x\n(B) y", "answer": "B"}
    path = write(tmp_path, [base, base | {"question_id": "r", "processed_question": None}])
    assert [r["question"] for r in load_benchmark("lvbench", path)] == [base["question"]] * 2


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="unknown benchmark 'mvbench'.*vsi_bench"):
        load_benchmark("mvbench", str(DATA / "video_mmmu.json"))


def test_not_a_list(tmp_path):
    path = write(tmp_path, {"question_id": "x"})
    with pytest.raises(ValueError, match=re.escape(f"{path}: expected a JSON list")):
        load_benchmark("lvbench", path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text('[\n{"question_id": "1",\n oops}\n]')
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3")):
        load_benchmark("lvbench", str(path))


def test_missing_field_names_file_record_and_field(tmp_path):
    good = {"question_id": "1", "video_path": "LVBench/a.mp4", "question": "Q?\n(A) x\n(B) y", "answer": "A"}
    bad = {key: value for key, value in good.items() if key != "answer"}
    path = write(tmp_path, [good, bad])
    with pytest.raises(ValueError) as err:
        load_benchmark("lvbench", path)
    assert str(err.value) == f"{path}, record index 1, field 'answer': missing required field"


@pytest.mark.parametrize(
    "name, change, field, message",
    [
        ("vsi_bench", {"answer": "yes"}, "answer", "expected an option letter A-J or a number, got 'yes'"),
        ("vsi_bench", {"question": "Describe the room."}, "question", "matches no VSI-Bench category rule"),
        ("vsi_bench", {"question": "If I am standing by the door, where is the bed?"}, "question", "easy/medium/hard"),
        ("video_mme", {"question_id": "1234"}, "question_id", "'1234'"),
        ("video_mme", {"question_id": "901-1"}, "question_id", "'901-1'"),
        ("tomato", {"video_path": "TOMATO/videos/animal/1.mp4"}, "video_path", "'animal'"),
        ("mmvu", {"video_path": "0.mp4"}, "video_path", "subject folder"),
        ("lvbench", {"video_path": 7}, "video_path", "expected a string"),
        ("lvbench", {"options": "A. x"}, "options", "expected a list"),
        ("lvbench", {"processed_question": ["Q"]}, "processed_question", "expected a string or null"),
        ("lvbench", {"answer": None}, "answer", "expected a string or number"),
        ("video_mmmu", {"answer": " "}, "answer", "empty answer"),
    ],
)
def test_bad_record_errors(tmp_path, name, change, field, message):
    record = {"question_id": "001-1", "video_path": "TOMATO/videos/human/1.mp4", "question": "How many?", "answer": "A"}
    record |= change
    path = write(tmp_path, [record, record])
    with pytest.raises(ValueError) as err:
        load_benchmark(name, path)
    assert f"{path}, record index 0, field '{field}': " in str(err.value)
    assert message in str(err.value)


def test_record_not_an_object(tmp_path):
    path = write(tmp_path, ["just a string"])
    with pytest.raises(ValueError, match=re.escape(f"{path}, record index 0: expected a JSON object, got str")):
        load_benchmark("lvbench", path)
