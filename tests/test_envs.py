"""The conda envs cannot be created here (no conda channels), so check them as data: every package
pinned in an env and in requirements.txt has the same version, and every rule names an env, a log
and a benchmark file."""
import re

import yaml

from conftest import ROOT


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def env_pins(path):
    env = yaml.safe_load(path.read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return pins(pip)


def test_env_pins_agree_with_requirements():
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert {p.name for p in envs} == {"train.yaml", "eval.yaml", "cpu.yaml"}
    for env in envs:
        for name, version in env_pins(env).items():
            if name in req:
                assert req[name] == version, f"{env.name}: {name}=={version} but requirements.txt has {req[name]}"


def test_every_env_pins_everything():
    for env in (ROOT / "envs").glob("*.yaml"):
        data = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in data["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert all("==" in p for p in pip), env.name
        assert "python=3.11" in data["dependencies"]


def test_every_rule_has_conda_log_and_benchmark():
    text = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    rules = re.split(r"\n\s*rule (\w+):", text)[1:]
    names = rules[0::2]
    assert len(names) >= 10
    for name, body in zip(names, rules[1::2]):
        for directive in ("conda:", "log:", "benchmark:"):
            assert directive in body, f"rule {name} lacks {directive}"
