"""The package's layout: shared basics at the top of veripo/, one subpackage per stage, imports that
run one way (scripts -> stages -> basics) and no circles. Read from the source with ast, nothing is
imported, and imports inside functions count as much as those at the top: a lazy import only moves
the moment a circle bites."""
import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "veripo"
# hashing (one sha256 for provenance, checkpoints and caches) and stage_config (the typed config of
# every stage, stdlib-only so the Snakefile may build them at parse time) serve every stage alike;
# config_reference writes docs/config.md from the config's schema; run_settings (the settings that change
# no job's result) is read by the rule layer and by training's and evaluation's resume fingerprints alike.
# arms (the variants of the loop, config `arms`) is read by the config check and the rule layer.
BASICS = {"errors", "jsonio", "config", "cli", "answers", "rewards", "prompts", "hashing", "stage_config",
          "config_reference", "run_settings", "arms"}
# The stages, lowest first. A module may import the basics, its own stage and any stage below it,
# never one above. The order follows the method's data flow and what each stage needs to do its job:
#   media   decodes videos and images and checks they decode; nothing else.
#   data    queries, the curriculum, synthetic sets (which write videos).
#   model   the policy: load, encode a query with its media, sample, log-probs; the tiny builder
#           (warmed up on synthetic data).
#   verify  judges the policy's rollouts and turns verdicts into chosen/rejected pairs; may run the
#           policy (a fresh sampling pass, an HF judge).
#   train   GRPO, DPO (which learns from verify's pairs), the warm-up, checkpoints.
#   eval    runs any checkpoint on the benchmarks and scores it with the verifier's judge.
#   report  draws a finished run's figures from the artifacts of every stage (read as files).
#   commands  the `veripo` console command: presents what the stages below compute (infer, pairs, score, export).
STAGES = ["media", "data", "model", "verify", "train", "eval", "report", "commands"]
RANK = {"basics": -1, **{stage: i for i, stage in enumerate(STAGES)}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[int, str]]:
    """(line, module) for every veripo module ``name`` imports, wherever the statement sits; for
    ``from pkg import x`` both pkg and, when x is a module, pkg.x."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.append((node.lineno, source))
            found += [(node.lineno, f"{source}.{a.name}") for a in node.names if f"{source}.{a.name}" in MODULES]
    return [(line, target) for line, target in found if target in MODULES]


GRAPH = {name: imports_of(name) for name in MODULES}


def stage_of(name: str) -> str:
    """The subpackage a module belongs to, or "basics" for veripo itself and its top-level modules."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and (PKG / parts[1]).is_dir() else "basics"


def where(name: str, line: int) -> str:
    return f"{MODULES[name].relative_to(ROOT)}:{line}"


def test_the_package_holds_only_the_basics_and_the_stages():
    top_modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    strays = sorted(top_modules - BASICS)
    assert strays == [], f"top-level modules that are not shared basics (move each into a stage): {strays}"
    assert BASICS - top_modules == set()
    packages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert packages == set(STAGES)
    folders = {p.parent for p in PKG.rglob("*.py")}
    assert [f for f in folders if not (f / "__init__.py").exists()] == []


def test_the_basics_import_no_stage():
    upward = [f"{where(name, line)} imports {target}" for name, edges in GRAPH.items() if stage_of(name) == "basics"
              for line, target in edges if stage_of(target) != "basics"]
    assert upward == [], "\n".join(upward)


def test_stages_import_only_the_basics_and_the_stages_below():
    upward = [f"{where(name, line)} imports {target} ({stage_of(target)} is above {stage_of(name)})"
              for name, edges in GRAPH.items() for line, target in edges
              if RANK[stage_of(target)] > RANK[stage_of(name)]]
    assert upward == [], "\n".join(upward)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_find_cycles_finds_a_circle_and_only_that():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(find_cycles(graph)) == [["a", "b", "c"], ["e"]]


def test_no_import_cycles():
    graph = {name: {target for _, target in edges} for name, edges in GRAPH.items()}
    cycles = find_cycles(graph)
    details = [f"{where(a, line)} imports {b}" for cycle in cycles for a in cycle
               for line, b in GRAPH[a] if b in cycle]
    assert cycles == [], "\n".join(details)
