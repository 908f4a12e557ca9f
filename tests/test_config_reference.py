"""docs/config.md is the schema's reference: current, complete, every key described."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from veripo import config_reference as ref
from veripo.run_settings import merge_layers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]
CLUSTER_SECTION = "## From a fresh clone to Qwen2.5-VL-7B on SLURM"
FILE_SUFFIXES = {"yaml", "json", "jsonl", "sh", "py", "md", "txt"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return ref.load(ref.SCHEMA)


def test_doc_is_the_generators_output():
    expected = ref.reference()
    assert DOC.exists(), f"docs/config.md is missing: run `{ref.COMMAND}`"
    assert DOC.read_text() == expected, f"docs/config.md is stale: run `{ref.COMMAND}`"


def test_every_schema_key_has_a_description(schema):
    assert ref.missing_descriptions(schema) == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_key_is_in_the_reference(schema, path):
    assert ref.undocumented(schema, ref.load(path)) == []


def test_the_doc_shows_a_row_or_section_for_every_key():
    # the rows a reader sees, not only the generator's list of them
    shown = set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), flags=re.M))
    sections = set(re.findall(r"^## `([^`]+)`$", DOC.read_text(), flags=re.M))
    rows = {k.name for k in ref.keys(ref.load(ref.SCHEMA))}
    assert shown | sections == rows


TINY = {
    "type": "object",
    "definitions": {"stage": {"type": "object", "properties": {
        "lr": {"type": "number", "exclusiveMinimum": 0, "description": "learning rate"}}}},
    "properties": {
        "top": {"type": "integer", "minimum": 1, "description": "a scalar"},
        "section": {"type": "object", "description": "a section", "required": ["inner"], "properties": {
            "inner": {"enum": ["a", "b"], "description": "an enum"},
            "free": {"type": "object", "description": "open keys"}}},
        "resources": {"type": "object", "description": "a map", "additionalProperties": {
            "type": "object", "description": "one entry", "properties": {
                "runtime": {"type": "integer", "description": "minutes"}}}},
        "stages": {"type": "array", "description": "a list", "items": {"$ref": "#/definitions/stage"}},
        "first": {"$ref": "#/definitions/stage", "description": "one stage"},
    },
}


def test_generator_walks_nesting_refs_maps_and_lists():
    names = [k.name for k in ref.keys(TINY)]
    assert names == ["top", "section", "section.inner", "section.free", "resources", "resources.<rule>",
                     "resources.<rule>.runtime", "stages", "stages[].lr", "first", "first.lr"]
    by_name = {k.name: k for k in ref.keys(TINY)}
    assert by_name["section.inner"].required and not by_name["section.free"].required
    assert by_name["first"].description == "one stage"  # beside a $ref, the node's own description wins


def test_a_key_without_a_description_stops_the_generation():
    schema = copy.deepcopy(TINY)
    assert ref.missing_descriptions(schema) == []
    ref.render(schema, {}, {})
    schema["properties"]["section"]["properties"]["new_key"] = {"type": "integer"}
    schema["properties"]["resources"]["additionalProperties"]["properties"]["gpus"] = {"description": " "}
    assert ref.missing_descriptions(schema) == ["section.new_key", "resources.<rule>.gpus"]
    with pytest.raises(ValueError, match=r"section\.new_key, resources\.<rule>\.gpus"):
        ref.render(schema, {}, {})


def test_rows_show_values_per_map_key_and_list_entry_and_7b_only_where_it_differs():
    default = {"top": 2, "resources": {"default": {"runtime": 30}, "train": {"runtime": 60}},
               "stages": [{"lr": 0.5}, {"lr": 0.25}], "section": {"inner": "a", "free": {"x": 1}}}
    big = {"resources": {"train": {"runtime": 600}}, "section": {"inner": "b"}}
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")
            for line in ref.render(TINY, default, big).splitlines() if line.startswith("| `")}
    assert rows["top"][3:5] == ["`2`", ""]
    assert rows["resources.<rule>.runtime"][3:5] == ["default: `30`; train: `60`", "default: `30`; train: `600`"]
    assert rows["stages[].lr"][3] == "[0]: `0.5`; [1]: `0.25`"
    assert rows["section.inner"][3:5] == ["`a`", "`b`"]
    assert rows["section.free"][3] == '`{"x": 1}`'


def test_config_keys_outside_the_schema_are_reported():
    config = {"top": 1, "typo": 2, "section": {"inner": "a", "free": {"any": {"thing": 1}}, "innr": 3},
              "resources": {"grpo": {"runtime": 1, "gpu": 2}}, "stages": [{"lr": 1, "lrr": 2}]}
    assert ref.undocumented(TINY, config) == ["typo", "section.innr", "resources.grpo.gpu", "stages[].lrr"]


def _cluster_section() -> str:
    text = (ROOT / "README.md").read_text()
    if CLUSTER_SECTION not in text:
        pytest.skip("README has no cluster guide")
    section = text.split(CLUSTER_SECTION, 1)[1]
    return section.split("\n## ", 1)[0]


def test_config_keys_cited_in_the_cluster_guide_exist(schema):
    rows = [k.path for k in ref.keys(schema)]
    top = {p[0] for p in rows}
    cited = set()
    prose = re.sub(r"```.*?```", "", _cluster_section(), flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        # a dotted config key: `grpo.micro_batch`, `eval.benchmarks.<name>.video_root`, `dpo.on_too_few_pairs: stop`;
        # not a file name (`train.yaml`)
        name = re.split(r"[:\s]", span)[0]
        if (re.fullmatch(r"[a-z_]+(\.[a-z_0-9<>\[\]]+)+", name) and name.split(".")[0] in top
                and name.rsplit(".", 1)[1] not in FILE_SUFFIXES):
            cited.add(name)
    assert cited, "the guide cites no config key"
    unknown = []
    for name in sorted(cited):
        concrete = tuple("[]" if re.fullmatch(r"\[\d*\]", s) else s for s in name.replace("[", ".[").split("."))
        if not any(ref._matches(p, concrete) or p == concrete for p in rows):
            unknown.append(name)
    assert unknown == []


def test_the_guides_site_config_is_valid_over_the_7b_config():
    from veripo.config import validate_config

    blocks = re.findall(r"```yaml\n(.*?)```", _cluster_section(), flags=re.S)
    assert blocks, "the guide shows no site config"
    site = yaml.safe_load(blocks[0])
    config = merge_layers(merge_layers(ref.load(ref.DEFAULT_CONFIG), ref.load(ref.CONFIG_7B)), site)
    validate_config(config)
    assert config["data"]["train_video"] == f"data/imported/{next(iter(site['data']['imports']))}.jsonl"
