"""What the docs cite exists. Read: README.md, docs/*.md, and the comments of config.yaml and
configs/*.yaml (what a user reads next to the setting). Checked:

- relative paths of the repository: a backticked token in the markdown, or a path-like word in a YAML
  comment, whose first component is a tracked top-level folder or file (veripo/, scripts/, speed/,
  tests/, rules/, configs/, profiles/, envs/, schemas/, report/, docs/, .ci/, Snakefile, config.yaml,
  ...), or any ``*.md`` file name; it must be a tracked file or folder (a trailing ``/`` a folder).
  Run outputs (iterK/..., data/..., logs/..., figures/...) are not the repository's and are not
  checked; nor are tokens holding a placeholder (``<``, ``{``, ``*``, ``NAME``, ``K``, ``...``).
- README sections cited by name: ``README "Name"`` / ``README section "Name"`` anywhere, and in
  README.md itself ``see "Name"``, ``"Name" below`` / ``above``: a README heading of that name (case
  aside); markdown links ``[text](#anchor)``: a heading of the same file with that GitHub anchor.
- config keys: a backticked dotted name (``grpo.rollout_backend``, ``grpo.per_iteration[].epochs``,
  ``data.imports.<name>``) whose first part is a top-level config key (of config.yaml or the schema):
  every further part must be a property the schema allows there (``[]`` steps into a list's items, a
  ``<placeholder>`` into any property). A dotted name that starts elsewhere (a settings.json or score
  field, a module) is not a config key and is not checked.
"""
import re
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT

TRACKED = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split())
TOP = {f.split("/")[0] for f in TRACKED}
SCHEMA = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
CONFIG_TOP = set(SCHEMA.get("properties", {})) | set(yaml.safe_load((ROOT / "config.yaml").read_text()))

MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
YAMLS = [ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]

PLACEHOLDER = re.compile(r"[<>{}*]|\.\.\.|\bNAME\b|iterK|\bK\b")
PATH_WORD = re.compile(r"(?<![\w/.-])((?:\.?[\w-]+/)+[\w.-]*|[\w-]+\.md)(?![\w/])")
DOTTED = re.compile(r"[a-z_][a-z0-9_]*(?:\.(?:[a-z_][a-z0-9_]*(?:\[\])?|<[a-z_]+>))+")


def _without_code_blocks(text: str) -> str:
    """Markdown with its fenced code blocks blanked (line numbers kept): commands there name run
    outputs and the user's own files."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def _backticked(path: Path) -> list[tuple[int, str]]:
    text = _without_code_blocks(path.read_text())
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in re.finditer(r"`([^`\n]+)`", text)]


def _yaml_comments(path: Path) -> list[tuple[int, str]]:
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        # a '#' that starts a comment: at the line's start or after a space, outside a quoted string
        m = re.search(r"(?:^|\s)#(.*)$", re.sub(r"\"[^\"]*\"|'[^']*'", lambda q: " " * len(q.group()), line))
        if m:
            out.append((i, line[m.start(1):]))
    return out


def _is_repo_path(token: str) -> bool:
    first = token.lstrip("./").split("/")[0]
    return (first in TOP and ("/" in token or first == token)) or token.endswith(".md")


def _ignored(token: str) -> bool:
    """Git-ignored: a place the docs say a command fills (speed/gpu/wheels/), not a file to ship."""
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", token], cwd=ROOT).returncode == 0


def _exists(token: str) -> bool:
    """On disk (a file new in the working tree counts: the docs and the file land together), or git-ignored;
    a bare ``*.md`` name at the root or in docs/."""
    token = token[2:] if token.startswith("./") else token
    path = ROOT / token
    if token.endswith("/"):
        return path.is_dir() or _ignored(token)
    if "/" not in token and token.endswith(".md"):
        return path.is_file() or (ROOT / "docs" / token).is_file()
    return path.exists() or _ignored(token)


def cited_paths() -> list[tuple[str, str]]:
    found = []
    for doc in MARKDOWN:
        for line, token in _backticked(doc):
            for word in token.split():
                word = word.strip(",;:()[]'\"")
                if word and not PLACEHOLDER.search(word) and "://" not in word and _is_repo_path(word):
                    found.append((f"{doc.relative_to(ROOT)}:{line}", word))
    for doc in YAMLS:
        for line, comment in _yaml_comments(doc):
            for m in PATH_WORD.finditer(comment):
                word = m.group(1).rstrip(".")
                if not PLACEHOLDER.search(word) and _is_repo_path(word):
                    found.append((f"{doc.relative_to(ROOT)}:{line}", word))
    return found


def _headings(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} +(.+?)\s*#*$", _without_code_blocks(text), re.M)]


def _section_names(text: str) -> set[str]:
    """What a citation "Name" may point at, lower case: a heading, or the bold lead of a paragraph or
    list item (``- **Decode speed** ...``), which the README uses as a subsection; a heading also by
    its part before a colon or parenthesis ("Measured" for "Measured (2 cores, ...)")."""
    text = _without_code_blocks(text)
    names = set()
    for h in _headings(text):
        names |= {h.lower(), re.split(r"[:(]", h)[0].strip().lower()}
    names |= {m.group(1).strip().lower() for m in re.finditer(r"^(?:- )?\*\*([^*\n]+)\*\*", text, re.M)}
    return names


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


README_HEADINGS = _section_names((ROOT / "README.md").read_text())


def cited_sections() -> list[tuple[str, str]]:
    found = []
    for doc in MARKDOWN + YAMLS:
        text = doc.read_text()
        patterns = [r"README(?:'s)?(?: section)? \"([^\"\n]+)\""]
        if doc.name == "README.md":
            text = _without_code_blocks(text)
            patterns += [r"[Ss]ee \"([^\"\n]+)\"", r"\"([^\"\n]+)\" (?:below|above)"]
        for pattern in patterns:
            for m in re.finditer(pattern, text):
                found.append((f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}", m.group(1)))
    return found


def cited_anchors() -> list[tuple[str, str, set]]:
    found = []
    for doc in MARKDOWN:
        text = _without_code_blocks(doc.read_text())
        anchors = {_anchor(h) for h in _headings(text)}
        for m in re.finditer(r"\]\(#([^)\s]+)\)", text):
            found.append((f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}", m.group(1), anchors))
    return found


def _resolve(node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = SCHEMA
        for key in node["$ref"].lstrip("#/").split("/"):
            target = target[key]
        node = target
    return node


def _step(node: dict, part: str) -> dict | None:
    node = _resolve(node)
    items = part.endswith("[]")
    name = part[:-2] if items else part
    props = node.get("properties", {})
    extra = node.get("additionalProperties")
    if name.startswith("<"):
        child = extra if isinstance(extra, dict) else ({} if extra is not False and props else None)
    elif name in props:
        child = props[name]
    elif isinstance(extra, dict):
        child = extra
    else:
        # a key under anyOf/oneOf branches (a union of objects) is allowed where any branch has it
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            found = _step(branch, part)
            if found is not None:
                return found
        return None
    if items:
        child = _resolve(child)
        if "items" not in child:
            return None
        child = child["items"]
    return child


FILE_SUFFIXES = {"yaml", "yml", "json", "jsonl", "py", "md", "txt", "tsv", "png", "smk", "sh", "log", "html"}


def _config_like(token: str) -> bool:
    """A dotted name that starts at a top-level config key and is not a file name (``train.yaml``)."""
    parts = token.split(".")
    return bool(DOTTED.fullmatch(token)) and parts[0] in CONFIG_TOP and not (len(parts) == 2 and
                                                                             parts[1] in FILE_SUFFIXES)


def cited_config_keys() -> list[tuple[str, str]]:
    found = []
    for doc in MARKDOWN:
        for line, token in _backticked(doc):
            if _config_like(token):
                found.append((f"{doc.relative_to(ROOT)}:{line}", token))
    for doc in YAMLS:
        for line, comment in _yaml_comments(doc):
            for m in re.finditer(r"`([^`]+)`", comment):
                if _config_like(m.group(1)):
                    found.append((f"{doc.relative_to(ROOT)}:{line}", m.group(1)))
    return found


def test_every_cited_repository_path_exists():
    assert len(cited_paths()) > 50  # the reader finds the docs' paths at all
    missing = [f"{where}: {path}" for where, path in cited_paths() if not _exists(path)]
    assert missing == [], "cited paths that do not exist:\n" + "\n".join(missing)


def test_every_cited_readme_section_exists():
    sections = cited_sections()
    assert sections, "no README section citation found: the patterns no longer match the docs"
    missing = [f"{where}: \"{name}\"" for where, name in sections if name.lower() not in README_HEADINGS]
    assert missing == [], "README sections cited but not found:\n" + "\n".join(missing)


def test_every_in_page_link_has_its_heading():
    missing = [f"{where}: #{anchor}" for where, anchor, anchors in cited_anchors() if anchor not in anchors]
    assert missing == [], "links to headings that do not exist:\n" + "\n".join(missing)


def test_every_cited_config_key_is_in_the_schema():
    keys = cited_config_keys()
    assert len(keys) > 30
    missing = [f"{where}: `{key}`" for where, key in keys if not _key_exists(key)]
    assert missing == [], "config keys cited but not in schemas/config.schema.yaml:\n" + "\n".join(missing)


def _key_exists(key: str) -> bool:
    node = {"properties": SCHEMA.get("properties", {})}
    for part in key.split("."):
        node = _step(node, part)
        if node is None:
            return False
    return True


def test_the_checks_tell_what_exists_from_what_does_not():
    """The errors issue 21 found would fail, their corrections pass."""
    assert not _exists("METHOD.md") and _exists("README.md") and _exists("speed/memory_plan.py")
    assert _exists("configs/") and not _exists("configs/nope.yaml")
    assert "data formats" not in README_HEADINGS and "artifact fields" in README_HEADINGS
    assert _key_exists("grpo.rollout_backend") and _key_exists("grpo.per_iteration[].epochs")
    assert not _key_exists("grpo.rolout_backend") and not _key_exists("grpo.rollout_backend.x")
