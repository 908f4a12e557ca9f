"""Build the tiny Qwen2.5-VL checkpoint (offline, deterministic) and describe it in a JSON file."""
import json

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging, summary


@click.command()
@click.option("--spec", type=JSON, required=True, help="config tiny_model section (JSON)")
@click.option("--prompts", type=JSON, required=True, help="prompt templates, added to the tokenizer corpus")
@click.option("--out", required=True, help="checkpoint directory to write")
@click.option("--info", required=True, help="JSON file describing the build")
@main_guard
def main(spec, prompts, out, info):
    setup_logging()
    from veripo.jsonio import atomic_path, write_json
    from veripo.model.tiny import build_tiny_qwen25vl

    with atomic_path(out) as tmp:
        result = build_tiny_qwen25vl(str(tmp), spec, prompts.values())
    write_json(info, {"kind": "tiny", "path": out, "spec": spec, **result})
    click.echo(json.dumps(result), err=True)
    summary(out, f"tiny Qwen2.5-VL, {result['params']:,} parameters")


if __name__ == "__main__":
    main()
