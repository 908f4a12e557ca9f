"""The configuration reference, docs/config.md, generated from schemas/config.schema.yaml.

One row per key path: its type, allowed values, config.yaml's value, the 7B config's where it differs
(configs/qwen25vl-7b.yaml merged over config.yaml, as snakemake merges --configfile files) and the
schema's description. ``python -m veripo.config_reference > docs/config.md`` regenerates it; a schema
key without a description stops the generation, naming the key.

Key paths: ``a.b`` for nested keys, ``<name>`` (``<rule>`` under ``resources``) for the keys of a map
(``additionalProperties``), ``[]`` for each entry of a list (``grpo.per_iteration[].lr``).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from veripo.run_settings import merge_layers

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config.yaml"
CONFIG_7B = ROOT / "configs" / "qwen25vl-7b.yaml"
COMMAND = "python -m veripo.config_reference > docs/config.md"

# A map's key placeholder by the map's key path; "<name>" elsewhere.
MAP_KEY = {("resources",): "<rule>"}
ITEM = "[]"
# Longest value shown in a cell (the prompt templates run to hundreds of characters).
MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class Key:
    """One row of the reference."""

    path: tuple[str, ...]
    node: dict
    required: bool
    has_children: bool

    @property
    def name(self) -> str:
        return dotted(self.path)

    @property
    def description(self) -> str:
        return str(self.node.get("description") or "").strip()

    @property
    def free_form(self) -> bool:
        """An object whose keys the schema leaves open (e.g. verifier.judge.engine_args)."""
        return _is_object(self.node) and not self.node.get("properties") and not isinstance(
            self.node.get("additionalProperties"), dict)


def dotted(path: tuple[str, ...]) -> str:
    out = ""
    for seg in path:
        out += seg if seg == ITEM or not out else "." + seg
    return out


def _resolve(schema: dict, node: dict) -> dict:
    """``node`` with its ``$ref`` (``#/definitions/...``) replaced by the definition; the node's own
    keywords (a description beside the ref) win."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}


def _is_object(node: dict) -> bool:
    t = node.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t) or "properties" in node


def _children(schema: dict, node: dict, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict, bool]]:
    required = set(node.get("required", []))
    for name, sub in (node.get("properties") or {}).items():
        yield path + (name,), _resolve(schema, sub), name in required
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield path + (MAP_KEY.get(path, "<name>"),), _resolve(schema, extra), False
    items = node.get("items")
    if isinstance(items, dict):
        items = _resolve(schema, items)
        if items.get("properties"):
            yield from _children(schema, items, path + (ITEM,))


def keys(schema: dict) -> list[Key]:
    """Every key path of ``schema``, depth first in the schema's order."""
    out: list[Key] = []

    def walk(path: tuple[str, ...], node: dict, required: bool) -> None:
        children = list(_children(schema, node, path))
        if path:
            out.append(Key(path, node, required, bool(children)))
        for child in children:
            walk(*child)

    walk((), schema, True)
    return out


def missing_descriptions(schema: dict) -> list[str]:
    """Key paths of ``schema`` without a non-empty description."""
    return [k.name for k in keys(schema) if not k.description]


def _matches(pattern: tuple[str, ...], concrete: tuple[str, ...]) -> bool:
    if len(pattern) != len(concrete):
        return False
    for p, c in zip(pattern, concrete):
        if p.startswith("<") and p.endswith(">"):
            if c == ITEM:
                return False
        elif p != c:
            return False
    return True


def config_paths(config: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path set in a config, list entries as ``[]``."""
    if isinstance(config, dict):
        for k, v in config.items():
            yield path + (str(k),)
            yield from config_paths(v, path + (str(k),))
    elif isinstance(config, list):
        for v in config:
            yield from config_paths(v, path + (ITEM,))


def undocumented(schema: dict, config: dict) -> list[str]:
    """Key paths set in ``config`` that no row of the reference covers (a free-form object covers
    everything under it)."""
    rows = keys(schema)
    free = [k.path for k in rows if k.free_form]
    out = []
    for concrete in config_paths(config):
        if any(_matches(k.path, concrete) for k in rows):
            continue
        if any(_matches(f, concrete[:len(f)]) for f in free):
            continue
        out.append(dotted(concrete))
    return out


def values_at(config: Any, path: tuple[str, ...], label: str = "") -> list[tuple[str, Any]]:
    """(label, value) of every place in ``config`` that ``path`` names; the label names the map keys
    and list positions the placeholders stood for."""
    if not path:
        return [(label, config)]
    head, rest = path[0], path[1:]
    out: list[tuple[str, Any]] = []
    if head == ITEM:
        for i, v in enumerate(config if isinstance(config, list) else []):
            out += values_at(v, rest, f"{label}[{i}]")
    elif head.startswith("<") and isinstance(config, dict):
        for k, v in config.items():
            out += values_at(v, rest, f"{label}.{k}" if label else str(k))
    elif isinstance(config, dict) and head in config:
        out += values_at(config[head], rest, label)
    return out


def _value(v: Any) -> str:
    if isinstance(v, str):
        text = v.replace("\n", "\\n") if v else '""'
    else:
        text = json.dumps(v, separators=(", ", ": "))
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS - 1] + "…"
    return f"`{text}`"


def _values_cell(found: list[tuple[str, Any]]) -> str:
    return "; ".join(f"{label}: {_value(v)}" if label else _value(v) for label, v in found)


def _literal(v: Any) -> str:
    return "`null`" if v is None else f"`{v}`" if isinstance(v, str) else f"`{json.dumps(v)}`"


def _type(node: dict) -> str:
    t = node.get("type")
    if t is None and "enum" in node:
        kinds = {"null" if v is None else "string" if isinstance(v, str) else "number" for v in node["enum"]}
        t = sorted(kinds, key=lambda k: k == "null")
    if t is None:
        return ""
    types = [t] if isinstance(t, str) else list(t)
    if "array" in types and isinstance(node.get("items"), dict):
        item = _type(node["items"]) or ("object" if "$ref" in node["items"] else "")
        types = [f"list of {item}" if x == "array" and item else x for x in types]
    return " or ".join(types)


def _allowed(node: dict, required: bool) -> str:
    parts = ["required"] if required else []
    if "enum" in node:
        parts.append("one of " + ", ".join(_literal(v) for v in node["enum"]))
    for word, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if word in node:
            parts.append(f"{sign} {node[word]}")
    if node.get("minLength") == 1:
        parts.append("non-empty")
    patterns = [node["pattern"]] if "pattern" in node else []
    patterns += [s["pattern"] for s in node.get("allOf", []) if isinstance(s, dict) and "pattern" in s]
    parts += [f"matches `{p}`" for p in patterns]
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    items = node.get("items")
    if isinstance(items, dict) and "enum" in items:
        parts.append("items: " + ", ".join(_literal(v) for v in items["enum"]))
    names = node.get("propertyNames", {})
    if "enum" in names:
        parts.append("keys: " + ", ".join(_literal(v) for v in names["enum"]))
    if "pattern" in names:
        parts.append(f"keys match `{names['pattern']}`")
    if "minProperties" in node:
        parts.append(f"at least {node['minProperties']} entr{'y' if node['minProperties'] == 1 else 'ies'}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    # Outside code spans "<name>" would read as an HTML tag.
    spans = text.split("`")
    return "`".join(s if i % 2 else re.sub(r"<(?=[A-Za-z/])", "&lt;", s) for i, s in enumerate(spans))


def render(schema: dict, default: dict, config_7b: dict) -> str:
    """docs/config.md's text; ValueError naming every key without a description."""
    missing = missing_descriptions(schema)
    if missing:
        raise ValueError("schema key(s) without a description: " + ", ".join(missing))
    merged = merge_layers(default, config_7b)
    head = ("| key | type | allowed | default (config.yaml) | 7B, where it differs | description |\n"
            "|---|---|---|---|---|---|\n")

    def row(k: Key) -> str:
        if k.has_children:
            shown, shown_7b = "", ""
        else:
            shown = _values_cell(values_at(default, k.path))
            shown_7b = _values_cell(values_at(merged, k.path))
            shown_7b = "" if shown_7b == shown else shown_7b
        cells = [f"`{k.name}`", _type(k.node), _allowed(k.node, k.required), shown, shown_7b, k.description]
        return "| " + " | ".join(_cell(c) for c in cells) + " |\n"

    rows = keys(schema)
    out = [
        "# Configuration reference\n\n",
        f"Generated from `schemas/config.schema.yaml` by `{COMMAND}`; do not edit by hand "
        "(`tests/test_config_reference.py` fails when this file is stale). The default column is "
        "`config.yaml`'s value; the 7B column is `configs/qwen25vl-7b.yaml` merged over it (as "
        "`--configfile config.yaml configs/qwen25vl-7b.yaml` merges them), shown where it differs. "
        "`<rule>` and `<name>` stand for the keys of a map, `[]` for each entry of a list; a map's or "
        "list's values are shown per key or position. An empty default: config.yaml does not set the key "
        "(the description says what applies then).\n\n",
        "## Top level\n\n", head,
    ]
    out += [row(k) for k in rows if len(k.path) == 1 and not k.has_children]
    for section in (k for k in rows if len(k.path) == 1 and k.has_children):
        out += [f"\n## `{section.name}`\n\n", _cell(section.description), "\n\n", head]
        out += [row(k) for k in rows if len(k.path) > 1 and k.path[0] == section.path[0]]
    return "".join(out)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def reference() -> str:
    """docs/config.md's text from the repository's schema and configs."""
    return render(load(SCHEMA), load(DEFAULT_CONFIG), load(CONFIG_7B))


if __name__ == "__main__":
    try:
        sys.stdout.write(reference())
    except ValueError as e:
        sys.exit(f"{SCHEMA}: {e}")
