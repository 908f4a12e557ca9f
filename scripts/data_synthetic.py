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
@click.option("--warmup", "warmup_out", default=None, help="the warm-up queries (JSONL); omitted: not written")
@click.option("--train-video", default=None, help="the video training set (JSONL); omitted: not written")
@click.option("--train-activation", default=None, help="the activation training set (JSONL); omitted: not written")
@click.option("--benchmark", "benchmarks", multiple=True, metavar="NAME=PATH", callback=_benchmark_paths,
              help="a question file to write in benchmark NAME's format (repeatable)")
@main_guard
def main(spec, warmup_out, train_video, train_activation, benchmarks):
    setup_logging()
    from veripo.data.synthetic_plan import benchmark_sizes, make_synthetic_data
    from veripo.jsonio import write_json, write_jsonl

    unknown = sorted(set(benchmarks) - set(benchmark_sizes(spec)))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected names among {', '.join(benchmark_sizes(spec))} "
                                 f"(data.synthetic.benchmark_sizes)", param_hint="--benchmark")
    sets = {key: path for key, path in (("warmup", warmup_out), ("train_video", train_video),
                                        ("train_activation", train_activation)) if path}
    if not sets and not benchmarks:
        raise click.UsageError("nothing to write: give --warmup, --train-video, --train-activation or --benchmark")
    # each set's media under its own file's folder, where load_queries resolves the records' paths
    data = make_synthetic_data(spec, {key: os.path.dirname(path) for key, path in sets.items()},
                               {name: os.path.dirname(path) for name, path in benchmarks.items()})
    for key, path in sets.items():
        write_jsonl(path, getattr(data, key))
    for name, path in benchmarks.items():
        write_json(path, data.benchmarks[name])
    labels = {"warmup": "warm-up", "train_video": "video training", "train_activation": "activation training"}
    written = [f"{len(getattr(data, key))} {labels[key]}" for key in sets]
    if written:
        written = [", ".join(written) + " queries"]
    if benchmarks:
        written.append(", ".join(f"{name} {len(data.benchmarks[name])}" for name in benchmarks)
                       + " benchmark questions")
    where = os.path.dirname(next(iter(sets.values()), None) or next(iter(benchmarks.values())))
    summary(where or ".", "; ".join(written))


if __name__ == "__main__":
    main()
