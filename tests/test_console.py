"""The ``veripo`` console command (veripo/commands/), run as a user runs it: the README's examples, taken
from the README, in a copy of a finished run's directory.

The README's examples name iter3 (the default run has 3 iterations); the ``finished_run`` chain is
shortened to 2, so the tests run them with iter3 -> iter2. The run's config (``test_config.yaml``) is
copied to ``config.yaml``, where the main job keeps it and where ``veripo infer`` looks for it.

- infer prints a reasoning and an answer, and greedy, they are what the evaluation produces for that
  benchmark question: the run's predictions file holds the same response, and the evaluation's HF
  backend, asked here, gives the same text; through vLLM (in the vLLM venv) the same text again.
- pairs show prints every shown pair's chosen and rejected text (each column, joined back, is the pair's
  text), its question, gold answer and rejection reasons, within the terminal width.
- score reproduces the run's score JSON from its predictions, as scripts/score.py does.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, VLLM_TEST_ENGINE
from veripo import answers, jsonio
from veripo.commands.infer import question_with_options
from veripo.eval.benchmarks import load_benchmark

README = ROOT / "README.md"
HEADING = "## Trying a checkpoint: the `veripo` command"
WIDTH = 100
ENTRY_POINT = Path(sys.executable).parent / "veripo"


def readme_commands() -> list[list[str]]:
    """The ``veripo ...`` command lines of the README section's bash block, as argument lists."""
    section = README.read_text().split(HEADING, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith("veripo ")]


def command(*args: str) -> list[str]:
    """The installed entry point (the README's install command installs it), else the same group through
    ``python -m``."""
    return [str(ENTRY_POINT), *args] if ENTRY_POINT.exists() else [sys.executable, "-m", "veripo.commands", *args]


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(WIDTH), **(env or {}))
    return subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def shortened(args: list[str]) -> list[str]:
    return [a.replace("iter3/", "iter2/") for a in args]


def examples(subcommand: str) -> list[list[str]]:
    found = [shortened(c[1:]) for c in readme_commands() if c[1] == subcommand]
    assert found, f"the README's `veripo` block has no `veripo {subcommand}` example"
    return found


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.fixture(scope="module")
def run_dir(finished_run, tmp_path_factory) -> Path:
    """A copy of the finished run (never the shared one), its config where the main job keeps it."""
    work = tmp_path_factory.mktemp("console") / "run"
    shutil.copytree(finished_run, work, ignore=shutil.ignore_patterns("checkpoints", "logs", ".snakemake"))
    shutil.copy(work / "test_config.yaml", work / "config.yaml")
    return work


def test_readme_block_covers_every_command_on_the_default_runs_paths():
    commands = readme_commands()
    assert {c[1] for c in commands} == {"infer", "pairs", "score", "export"}
    for c in commands:
        assert c[0] == "veripo"
        paths = [a for a in c if "/" in a]
        # the default run has 3 iterations: its examples name the last one's artifacts
        assert all(not re.match(r"iter\d", p) or p.startswith("iter3/") for p in paths), c


def test_help_of_the_group_and_every_command():
    out = subprocess.run(command("--help"), capture_output=True, text=True)
    assert out.returncode == 0 and all(name in out.stdout for name in ("infer", "pairs", "score", "export"))
    for sub, expected in ((["infer"], ["--video", "--image", "--question", "--options", "--backend", "--fps"]),
                          (["pairs", "show"], ["--kind", "--query", "--limit"]),
                          (["score"], ["--benchmark", "--predictions", "--output", "--questions"]),
                          (["export"], ["RUN_DIR", "ITER", "OUT", "--grpo"])):
        out = subprocess.run(command(*sub, "--help"), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert all(flag in out.stdout for flag in expected), out.stdout


def printed_parts(stdout: str) -> tuple[str, str]:
    """(reasoning, answer) as infer prints them: each under its label, indented by two spaces."""
    match = re.search(r"^reasoning \(<think>\):\n(.*?)\nanswer \(<answer>\):\n(.*?)\n\(\d+ tokens", stdout,
                      re.DOTALL | re.MULTILINE)
    assert match, stdout

    def unindent(block: str) -> str:
        return "\n".join(line.removeprefix("  ") for line in block.split("\n"))

    return unindent(match.group(1)), unindent(match.group(2))


@pytest.fixture(scope="module")
def eval_backend(run_dir):
    """The evaluation's HF backend on the examples' model, with the run's vsi_bench settings."""
    from veripo.config import load_config
    from veripo.eval.backends.hf import HFBackend
    from veripo.eval.settings import job_settings

    config = load_config(run_dir / "config.yaml")
    [model] = {option(args, "--model") for args in examples("infer")}
    bench = config["eval"]["benchmarks"]["vsi_bench"]
    questions = load_benchmark("vsi_bench", run_dir / bench["questions"])
    return HFBackend(str(run_dir / model), job_settings(config, "vsi_bench"), str(run_dir / bench["video_root"])), \
        questions, bench


def test_readme_infer_answers_as_the_evaluation(run_dir, eval_backend):
    backend, questions, bench = eval_backend
    predictions = {p["key"]: p for p in jsonio.read_jsonl(run_dir / "iter2/eval/vsi_bench.predictions.jsonl")}
    for args in examples("infer"):
        # the example's video is a benchmark question's: infer must give the evaluation's answer to it
        video = Path(option(args, "--video")).relative_to(bench["video_root"]).as_posix()
        [question] = [q for q in questions if q["video_path"] == video]
        options = tuple(a for flag, a in zip(args, args[1:]) if flag == "--options")
        assert question_with_options(option(args, "--question"), options) == question["question"], \
            "the README's example question is not the benchmark's question about that video"

        out = run(args, run_dir)
        assert out.returncode == 0, out.stderr[-3000:]
        reasoning, answer = printed_parts(out.stdout)
        evaluated = backend.generate([question])[0]
        assert (reasoning, answer) == (answers.extract_think(evaluated.text), answers.extract_answer(evaluated.text))
        assert reasoning and answer, "the trained model answers in format: a reasoning and an answer"
        assert answers.extract_answer(predictions[question["key"]]["response"]) == answer

        whole = json.loads(run([*args, "--json"], run_dir).stdout)
        assert whole["output"] == evaluated.text == predictions[question["key"]]["response"]
        assert whole["num_tokens"] == evaluated.num_tokens
        assert (whole["reasoning"], whole["answer"]) == (reasoning, answer)


def pair_blocks(stdout: str) -> list[list[str]]:
    """The lines of each printed pair (after its ``====`` rule), the summary line left out."""
    blocks: list[list[str]] = []
    for line in stdout.splitlines():
        if set(line) == {"="}:
            blocks.append([])
        elif blocks:
            blocks[-1].append(line)
    if blocks:
        blocks[-1] = [line for line in blocks[-1] if not re.match(r"\d+ of \d+ pairs shown", line)]
    return blocks


def columns(block: list[str]) -> tuple[str, str]:
    """The two columns under the ``---+---`` rule, each joined back with its whitespace removed."""
    [rule] = [i for i, line in enumerate(block) if re.fullmatch(r"-+\+-+", line)]
    split = block[rule].index("+") - 1
    left = [line[:split] for line in block[rule + 1:]]
    right = [line[split + 3:] for line in block[rule + 1:]]
    # an empty right-hand side leaves the separator's trailing space stripped
    assert all(line[split:split + 3].rstrip() == " |" for line in block[rule + 1:] if len(line) > split)
    return "".join("".join(left).split()), "".join("".join(right).split())


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_readme_pairs_show_prints_both_sides_and_the_reasons(run_dir):
    [args] = examples("pairs")
    file = run_dir / args[2]
    pairs = jsonio.read_jsonl(file)
    out = run(args, run_dir)
    assert out.returncode == 0, out.stderr
    blocks = pair_blocks(out.stdout)
    limit = int(option(args, "--limit"))
    assert len(blocks) == min(limit, len(pairs)) > 0
    for pair, block in zip(pairs, blocks):
        text = "\n".join(block)
        assert pair["pair_id"] in block[0] and pair["kind"] in block[0] and pair["query_id"] in block[0]
        assert squeeze(pair["query"]["question"]) in squeeze(text)
        assert f"gold answer: {pair['query']['answer']}" in text
        assert all(squeeze(reason) in squeeze(text) for reason in pair["rejected_reasons"])
        assert columns(block) == (squeeze(pair["chosen"]), squeeze(pair["rejected"]))
    assert max(len(line) for line in out.stdout.splitlines()) <= WIDTH


def test_pairs_show_filters(run_dir):
    file = run_dir / "iter2/dpo/pairs.jsonl"
    pairs = jsonio.read_jsonl(file)
    kind = pairs[-1]["kind"]
    out = run(["pairs", "show", str(file), "--kind", kind], run_dir)
    shown = [block[0].split()[1] for block in pair_blocks(out.stdout)]
    assert shown == [p["pair_id"] for p in pairs if p["kind"] == kind]
    query = pairs[-1]["query_id"]
    out = run(["pairs", "show", str(file), "--query", query, "--limit", "1", "--width", "60"], run_dir)
    blocks = pair_blocks(out.stdout)
    assert [b[0].split()[1] for b in blocks] == [next(p["pair_id"] for p in pairs if p["query_id"] == query)]
    assert max(len(line) for line in blocks[0]) <= 60


def test_pairs_show_names_the_bad_line(run_dir, tmp_path):
    good = (run_dir / "iter2/dpo/pairs.jsonl").read_text().splitlines()[0]
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(good + "\n" + json.dumps({**json.loads(good), "rejected": 3}) + "\n")
    out = run(["pairs", "show", str(bad)], run_dir)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {bad}, line 2, field 'rejected': expected a string, got an integer"


def test_readme_score_reproduces_the_runs_score(run_dir):
    [args] = examples("score")
    out = run(args, run_dir)
    assert out.returncode == 0, out.stderr
    scored = jsonio.read_json(run_dir / option(args, "--output"))
    run_score = jsonio.read_json(run_dir / "iter2/eval/vsi_bench.json")
    assert scored["n"] == run_score["n"] > 0
    for key in ("benchmark", "overall", "categories", "official_overall", "official_categories"):
        assert scored[key] == run_score[key], key
    assert f"{run_score['overall']:6.2f}".strip() in out.stdout

    # scripts/score.py is the same command: same table, same file
    script_out = run_dir / "script_score.json"
    script_args = [a if a != option(args, "--output") else str(script_out) for a in args[1:]]
    script = subprocess.run([sys.executable, str(ROOT / "scripts/score.py"), *script_args], cwd=run_dir,
                            capture_output=True, text=True)
    assert script.returncode == 0, script.stderr
    assert script.stdout == out.stdout and jsonio.read_json(script_out) == scored


def test_infer_text_and_image_questions(run_dir):
    """No media: a prompt without vision tokens; an image: one image in the prompt; both answer."""
    [model] = {option(args, "--model") for args in examples("infer")}
    text = json.loads(run(["infer", "--model", model, "--question", "What is 4 plus 5?", "--json"], run_dir).stdout)
    assert "<|vision_start|>" not in text["prompt"] and "What is 4 plus 5?" in text["prompt"]
    assert "must be a number" in text["prompt"]  # the number template
    image_rec = next(r for r in jsonio.read_jsonl(run_dir / "data/train_activation.jsonl") if r.get("image"))
    question, *options = image_rec["question"].split("\n")
    args = ["infer", "--model", model, "--image", f"data/{image_rec['image']}", "--question", question, "--json"]
    args += [a for o in options for a in ("--options", o)]
    image = json.loads(run(args, run_dir).stdout)
    assert image["prompt"].count("<|image_pad|>") >= 1 and "<|video_pad|>" not in image["prompt"]
    assert image_rec["question"] in image["prompt"]
    for result in (text, image):
        assert result["answer"] == answers.extract_answer(result["output"])
        assert result["settings"]["generation"]["temperature"] == 0.0


def test_infer_refuses_bad_arguments_in_one_line(run_dir, tiny_dir):
    out = run(["infer", "--model", tiny_dir, "--question", "q", "--options", "A. x", "--answer-type", "numeric"],
              run_dir)
    assert out.returncode == 2 and "--options make a multiple-choice question" in out.stderr
    out = run(["infer", "--model", tiny_dir, "--question", "q", "--min-frames", "9", "--max-frames", "4"], run_dir)
    assert out.returncode == 2 and "--min-frames 9 exceeds --max-frames 4" in out.stderr
    try:
        import vllm  # noqa: F401
    except ImportError:
        out = run(["infer", "--model", tiny_dir, "--question", "q", "--backend", "vllm"], run_dir)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "vllm does not import" in out.stderr


def test_vllm_infer_gives_the_hf_answer(tiny_dir, video_set, vllm_python, vllm_env, tmp_path):
    """Greedy on the tiny (untrained) model: the same output through vLLM (the vLLM venv, the checkout on
    PYTHONPATH) as through the HF backend, token count included."""
    rec = next(r for r in video_set if r.get("options"))
    question, *options = rec["question"].split("\n")
    args = ["infer", "--model", tiny_dir, "--video", rec["video"], "--question", question, "--json",
            "--max-new-tokens", "24", *[a for o in options for a in ("--options", o)]]
    hf = run(args, tmp_path)
    assert hf.returncode == 0, hf.stderr[-3000:]
    engine = json.dumps(VLLM_TEST_ENGINE)
    vllm = subprocess.run([vllm_python, "-m", "veripo.commands", *args, "--backend", "vllm", "--vllm-args", engine],
                          cwd=tmp_path, capture_output=True, text=True, env=vllm_env, timeout=900)
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    # vLLM logs to stdout too: the answer is the last line
    hf_result, vllm_result = json.loads(hf.stdout), json.loads(vllm.stdout.strip().splitlines()[-1])
    assert vllm_result["prompt"] == hf_result["prompt"]
    assert (vllm_result["output"], vllm_result["num_tokens"]) == (hf_result["output"], hf_result["num_tokens"])


# A checkpoint's own settings, layered config files, export, and the score command's benchmark check ----

def infer_json(args: list[str], cwd: Path) -> dict:
    out = run(["infer", *args, "--question", "What is 4 plus 5?", "--json"], cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def asked_as(settings: dict) -> dict:
    """Settings as infer runs them: one question per call, on the HF backend."""
    return {**settings, "generation": {**settings["generation"], "batch_size": 1, "backend": "hf"}}


def test_infer_takes_the_checkpoints_settings_not_the_directorys_config(run_dir, tmp_path):
    """A run directory's config.yaml may be another run's (a 7B run keeps the tiny default there): infer
    takes the evaluation's settings of the checkpoint, else the training job's settings beside it."""
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    local = yaml.safe_load((work / "config.yaml").read_text())
    local["eval"]["max_new_tokens"] = 5
    (work / "config.yaml").write_text(yaml.safe_dump(local))
    evaluated = infer_json(["--model", "iter2/dpo/model"], work)
    record = jsonio.read_json(work / "iter2/eval/vsi_bench.run.json")
    assert evaluated["settings"] == asked_as(record["settings"])
    assert evaluated["settings_from"].startswith(str(work / "iter2/eval/vsi_bench.run.json"))

    shutil.rmtree(work / "iter1/eval_grpo")  # no evaluation of iteration 1's GRPO checkpoint: its training settings
    trained = infer_json(["--model", "iter1/grpo/model"], work)
    job = jsonio.read_json(work / "iter1/grpo/settings.json")["config"]
    assert trained["settings_from"].startswith(str(work / "iter1/grpo/settings.json"))
    assert (trained["settings"]["media"], trained["settings"]["prompts"]) == (job["media"], job["prompts"])
    assert trained["settings"]["generation"]["max_new_tokens"] == job["grpo"]["max_new_tokens"]


def test_infer_layers_config_files_as_snakemake(run_dir):
    """--configfile A B merges B over A over the repository's config.yaml; one file alone is layered too."""
    seven_b = str(ROOT / "configs/qwen25vl-7b.yaml")
    both = infer_json(["--model", "iter2/dpo/model", "--max-new-tokens", "4", "--configfile", "config.yaml", seven_b],
                      run_dir)
    alone = infer_json(["--model", "iter2/dpo/model", "--max-new-tokens", "4", "--config", seven_b], run_dir)
    for result in (both, alone):
        settings = result["settings"]
        assert (settings["dtype"], settings["attn_implementation"]) == ("bfloat16", "flash_attention_2")
        assert settings["media"]["max_frames"] == 128 and settings["generation"]["vllm"]["max_model_len"] == 32768
    assert both["settings_from"] == f"config.yaml + {seven_b}"


def test_plain_transformers_loads_an_exported_checkpoint(run_dir, tmp_path):
    """veripo export writes the checkpoint, its settings and a model card; the folder loads with plain
    transformers (veripo never imported: the torchvision CPU shim comes with the install) and infer on it
    answers as on the run's checkpoint."""
    [args] = examples("export")
    out_dir = tmp_path / "exported"
    args = [*args[:2], "2", str(out_dir)]  # the shortened run's last iteration
    done = run(args, run_dir)
    assert done.returncode == 0, done.stderr
    score = jsonio.read_json(run_dir / "iter2/eval/vsi_bench.json")
    assert f"vsi_bench {score['overall']:.2f} (95% CI {score['ci95'][0]:.2f}-{score['ci95'][1]:.2f})" in done.stdout

    card = (out_dir / "README.md").read_text()
    for stage in ("base", "iter0/grpo", "iter1/grpo", "iter1/dpo", "iter2/grpo", "iter2/dpo"):
        assert f"| `{stage}` (" in card
    assert f"{score['overall']:.2f} (95% CI {score['ci95'][0]:.2f}-{score['ci95'][1]:.2f})" in card
    assert "data/train_video.jsonl" in card and "tiny Qwen2.5-VL" in card
    settings = jsonio.read_json(out_dir / "settings.json")
    assert settings["inference"] == jsonio.read_json(run_dir / "iter2/eval/vsi_bench.run.json")["settings"]
    assert set(settings["run"]) == {"base", "iter0/grpo", "iter1/grpo", "iter1/dpo", "iter2/grpo", "iter2/dpo"}

    code = ("import sys; from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration; "
            "m = Qwen2_5_VLForConditionalGeneration.from_pretrained(sys.argv[1]); AutoProcessor.from_pretrained(sys.argv[1]); "
            "assert 'veripo' not in sys.modules and 'torchvision' in sys.modules; print(m.config.model_type)")
    plain = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=tmp_path, capture_output=True, text=True)
    assert plain.returncode == 0 and plain.stdout.strip() == "qwen2_5_vl", (
        "plain transformers does not load the checkpoint; pip install -r requirements.txt installs the shim:\n"
        + plain.stderr[-2000:])

    exported, original = infer_json(["--model", str(out_dir)], tmp_path), infer_json(["--model", "iter2/dpo/model"], run_dir)
    assert exported["settings_from"] == str(out_dir / "settings.json")
    assert exported["output"] == original["output"] and exported["settings"] == original["settings"]
    again = run(args, run_dir)
    assert again.returncode == 2 and again.stderr.strip() == f"error: {out_dir}: exists already: export writes a new folder"


def test_score_refuses_another_benchmarks_predictions(run_dir, tmp_path):
    predictions = "iter2/eval/vsi_bench.predictions.jsonl"
    out = run(["score", "--benchmark", "tomato", "--predictions", predictions, "--output", str(tmp_path / "s.json")],
              run_dir)
    assert out.returncode != 0 and not (tmp_path / "s.json").exists()
    assert out.stderr.strip().splitlines() == [f"Error: {predictions}: predictions of vsi_bench "
                                               f"(iter2/eval/vsi_bench.run.json says so), not of tomato"]
    alone = tmp_path / "predictions.jsonl"  # no evaluation record beside it: its categories tell
    shutil.copy(run_dir / predictions, alone)
    out = run(["score", "--benchmark", "tomato", "--predictions", str(alone), "--output", str(tmp_path / "s.json")],
              run_dir)
    categories = sorted({p["category"] for p in jsonio.read_jsonl(alone)})
    assert out.returncode != 0 and out.stderr.strip().splitlines() == [
        f"Error: {alone}: categories {', '.join(categories)} are not tomato's but vsi_bench's: "
        "predictions of another benchmark"]
