"""Write the synthetic data: warm-up queries, video and activation training sets, and benchmark
question files in the six evaluation formats (videos under each file's folder)."""
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging, summary


def _benchmark_paths(ctx, param, items) -> dict[str, str]:
    paths = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path:
            raise click.BadParameter(f"{item!r}: expected NAME=PATH")
        paths[name] = path
    return paths


@click.command()
@click.option("--spec", type=JSON, required=True, help="config data.synthetic section (JSON)")
@click.option("--warmup", "warmup_out", required=True)
@click.option("--train-video", required=True)
@click.option("--train-activation", required=True)
@click.option("--benchmark", "benchmarks", multiple=True, required=True, metavar="NAME=PATH",
              callback=_benchmark_paths, help="a question file to write in benchmark NAME's format (repeatable)")
@main_guard
def main(spec, warmup_out, train_video, train_activation, benchmarks):
    setup_logging()
    from veripo.data.synthetic_plan import benchmark_sizes, make_synthetic_data
    from veripo.jsonio import write_json, write_jsonl

    unknown = sorted(set(benchmarks) - set(benchmark_sizes(spec)))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected names among {', '.join(benchmark_sizes(spec))} "
                                 f"(data.synthetic.benchmark_sizes)", param_hint="--benchmark")
    data = make_synthetic_data(spec, os.path.dirname(train_video),
                               {name: os.path.dirname(path) for name, path in benchmarks.items()})
    write_jsonl(warmup_out, data.warmup)
    write_jsonl(train_video, data.train_video)
    write_jsonl(train_activation, data.train_activation)
    for name, path in benchmarks.items():
        write_json(path, data.benchmarks[name])
    summary(os.path.dirname(train_video) or ".", f"{len(data.warmup)} warm-up, {len(data.train_video)} video and "
            f"{len(data.train_activation)} activation training queries; "
            + ", ".join(f"{name} {len(data.benchmarks[name])}" for name in benchmarks) + " benchmark questions")


if __name__ == "__main__":
    main()
