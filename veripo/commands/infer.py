"""``veripo infer``: one question (video, image or text) to a checkpoint, answered as the evaluation
answers a benchmark question.

The settings are the checkpoint's own (veripo/commands/checkpoint.py: an exported folder's settings.json,
the run's evaluation of the checkpoint, the training job's settings beside it), or those of the layered
``--configfile`` files, with the command's overrides, greedy unless ``--temperature`` says otherwise. A
video question is prepared by the evaluation's own ``veripo.eval.inputs.prepare`` (same template, frames,
chat text); an image or text question, which no benchmark has, by training's ``policy.query_inputs``.
Either goes to the evaluation backend's ``generate_inputs``, so the answer to a benchmark question is the
one its predictions hold.
"""
from __future__ import annotations

import json
import os
import sys

import click

from veripo.answers import ANSWER_TYPES
from veripo.cli import JSON, main_guard, terminal_safe

MEDIA_OPTIONS = ("fps", "min_frames", "max_frames", "min_pixels", "max_pixels")


class ConfigFiles(click.Option):
    """A repeatable option that also takes several values after one flag, as Snakemake's
    ``--configfile A B``: the values run up to the next option."""

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            option.process = self._greedy(option.process)

    @staticmethod
    def _greedy(process):
        def take(value, state) -> None:
            process(value, state)
            while state.rargs and not state.rargs[0].startswith("-"):
                process(state.rargs.pop(0), state)

        return take


def question_with_options(question: str, options: tuple[str, ...]) -> str:
    """The options on their own lines after the question, as the benchmarks and our synthetic sets write them."""
    return "\n".join([question, *options])


def infer_settings(job: dict, media: dict, temperature: float, max_new_tokens: int | None, backend: str,
                   vllm_args: dict | None) -> dict:
    """The evaluation settings ``job`` (``EvalJob``'s fields, as the backends read them) with ``media`` (the
    given ``MEDIA_OPTIONS``) and the sampling overrides applied, one question per call."""
    generation = dict(job["generation"], temperature=temperature, backend=backend, batch_size=1)
    if max_new_tokens:
        generation["max_new_tokens"] = max_new_tokens
    if vllm_args is not None:
        generation["vllm"] = vllm_args
    return dict(job, generation=generation,
                media={**job["media"], **{k: v for k, v in media.items() if v is not None}},
                skip_missing_videos=False)


def check_media(media: dict) -> None:
    if media["min_frames"] > media["max_frames"]:
        raise click.UsageError(f"--min-frames {media['min_frames']} exceeds --max-frames {media['max_frames']}")
    if media["min_pixels"] > media["max_pixels"]:
        raise click.UsageError(f"--min-pixels {media['min_pixels']} exceeds --max-pixels {media['max_pixels']}")


def prepare_input(processor, settings: dict, question: str, answer_type: str, video: str | None,
                  image: str | None):
    """The EvalInput of one question: the evaluation's for a video, training's decoding for an image or text."""
    from veripo.eval import inputs as eval_inputs

    if video:
        record = {"key": video, "question": question, "answer_type": answer_type,
                  "video_path": os.path.abspath(video), "raw": {}}
        return eval_inputs.prepare(processor, record, "", settings["media"], settings["prompts"])
    from veripo.model import policy

    record = {"question": question, "answer_type": answer_type, "image": image and os.path.abspath(image)}
    return eval_inputs.EvalInput(image or "text question",
                                 *policy.query_inputs(processor, record, settings["prompts"], settings["media"],
                                                      source=image))


def run(model: str, settings: dict, question: str, answer_type: str, video: str | None = None,
        image: str | None = None, seed: int = 0):
    """(prepared input, Generation) of one question, with the backend ``settings["generation"]`` names."""
    from veripo.eval.backends import hf as backends

    backend = backends.load_backend(settings["generation"]["backend"], model, settings, "", seed)
    inp = prepare_input(backend.processor, settings, question, answer_type, video, image)
    return inp, backend.generate_inputs([inp])[0]


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))


def report(text: str, num_tokens: int, truncated: bool, temperature: float) -> str:
    """The reasoning and the answer, labelled; the whole output too when either tag pair is missing."""
    from veripo.answers import extract_answer, extract_think

    think, answer = extract_think(text), extract_answer(text)
    lines = ["reasoning (<think>):", indent(think) if think is not None else "  (none: no <think>...</think>)",
             "answer (<answer>):", indent(answer) if answer is not None else "  (none: no <answer>...</answer>)"]
    if think is None or answer is None:
        lines += ["output:", indent(text)]
    decoding = "greedy" if temperature <= 1e-5 else f"temperature {temperature}"
    lines.append(f"({num_tokens} tokens, {decoding}" + (", truncated at --max-new-tokens)" if truncated else ")"))
    return "\n".join(lines)


@click.command("infer", short_help="Ask a checkpoint one question: its reasoning and answer.")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False),
              help="Checkpoint directory (a Hugging Face Qwen2.5-VL folder), e.g. iter3/dpo/model.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None, help="The question's video.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The question's image (instead of a video). Neither: a text question.")
@click.option("--question", required=True, help="The question, without its options.")
@click.option("--options", multiple=True, metavar="OPTION",
              help="One answer option, e.g. 'A. left'; repeat for each. They follow the question on their "
                   "own lines, as in the benchmarks' questions.")
@click.option("--answer-type", type=click.Choice(ANSWER_TYPES), default=None,
              help="Picks the prompt template: multiple_choice the option template, the others the number "
                   "template. Default: multiple_choice with --options, else numeric.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frames sampled per second of video. Default: the checkpoint's settings (as all media options).")
@click.option("--min-frames", type=click.IntRange(min=1), default=None, help="Fewest frames sampled from the video.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Most frames sampled from the video.")
@click.option("--min-pixels", type=click.IntRange(min=1), default=None, help="Smallest frame area after resizing.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Largest frame area after resizing.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Sampling temperature; 0 is greedy (the evaluation's decoding).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Longest answer. Default: the checkpoint's settings.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler (temperature > 0).")
@click.option("--backend", type=click.Choice(["hf", "vllm"]), default="hf", show_default=True,
              help="hf: transformers; vllm: vLLM, run with the vLLM venv's Python "
                   "(.venv-vllm/bin/python -m veripo.commands infer ...).")
@click.option("--vllm-args", type=JSON, default=None,
              help="vllm.LLM keyword arguments as JSON, e.g. '{\"max_model_len\": 4096}'. Default: the checkpoint's settings.")
@click.option("--configfile", "--config", "configfiles", cls=ConfigFiles, multiple=True,
              type=click.Path(exists=True, dir_okay=False), metavar="FILE...",
              help="Config files whose eval section gives the settings, merged over the repository's config.yaml "
                   "in turn as Snakemake merges them (--configfile config.yaml configs/qwen25vl-7b.yaml). "
                   "Default: the checkpoint's own settings (an exported folder's settings.json, the run's "
                   "evaluation of it, or the training job's settings.json beside it).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: reasoning, answer, output, num_tokens, truncated, prompt, settings.")
@click.option("--show-prompt", is_flag=True, help="Print the chat-templated prompt before the answer.")
@main_guard
def infer(model: str, video: str | None, image: str | None, question: str, options: tuple[str, ...],
          answer_type: str | None, temperature: float, max_new_tokens: int | None, seed: int, backend: str,
          vllm_args: dict | None, configfiles: tuple[str, ...], as_json: bool, show_prompt: bool, **media) -> None:
    """Ask a checkpoint one question and print its reasoning and its answer.

    The prompt, the frames and the decoding are the checkpoint's evaluation settings (greedy), so a
    benchmark question gets the answer its predictions file holds; --configfile takes them from config
    files instead.

    \b
    veripo infer --model iter3/dpo/model --video data/bench/videos/b0000.mp4 \\
        --question "How many squares are in this video?"
    veripo infer --model iter3/dpo/model --image data/images/a0000.png --question "..." \\
        --options "A. red" --options "B. green"
    """
    from veripo.commands.checkpoint import checkpoint_job, config_job, layered_config

    if video and image:
        raise click.UsageError("give --video or --image, not both")
    if answer_type is None:
        answer_type = "multiple_choice" if options else "numeric"
    elif options and answer_type != "multiple_choice":
        raise click.UsageError(f"--options make a multiple-choice question, not --answer-type {answer_type}")
    if backend == "vllm":
        from veripo.eval.backends.hf import vllm_available

        if not vllm_available():
            click.echo(f"error: --backend vllm: vllm does not import in this Python ({sys.executable}); run the "
                       "command with the vLLM venv's: .venv-vllm/bin/python -m veripo.commands infer ...", err=True)
            sys.exit(2)
    if configfiles:
        job, source = config_job(layered_config(configfiles)), " + ".join(configfiles)
    else:
        job, source = checkpoint_job(model)
    click.echo(terminal_safe(f"settings: {source}"), err=True)
    settings = infer_settings(job, media, temperature, max_new_tokens, backend, vllm_args)
    check_media(settings["media"])
    inp, gen = run(model, settings, question_with_options(question, options), answer_type, video, image, seed)
    if as_json:
        from veripo.answers import extract_answer, extract_think

        click.echo(json.dumps({"reasoning": extract_think(gen.text), "answer": extract_answer(gen.text),
                               "output": gen.text, "num_tokens": gen.num_tokens, "truncated": gen.truncated,
                               "prompt": inp.text, "settings": settings,
                               "settings_from": source}, ensure_ascii=False))
        return
    if show_prompt:
        click.echo(terminal_safe(f"prompt:\n{inp.text}"))
    click.echo(terminal_safe(report(gen.text, gen.num_tokens, gen.truncated, temperature)))
