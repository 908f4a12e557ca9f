"""Write the synthetic data: warm-up queries, video and activation training sets, and benchmark
question files in the six evaluation formats (videos under each file's folder)."""
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--spec", type=JSON, required=True, help="config data.synthetic section (JSON)")
@click.option("--warmup", "warmup_out", required=True)
@click.option("--train-video", required=True)
@click.option("--train-activation", required=True)
@click.option("--benchmark", "benchmarks", multiple=True, required=True, metavar="NAME=PATH",
              help="a question file to write in benchmark NAME's format (repeatable)")
@main_guard
def main(spec, warmup_out, train_video, train_activation, benchmarks):
    setup_logging()
    from veripo.data import synthetic
    from veripo.data import synthetic_benchmarks
    from veripo.jsonio import write_json, write_jsonl

    s = spec
    vid = dict(size=s["video_size"], fps=s["video_fps"], seconds=s["video_seconds"])
    out_dir = os.path.dirname(train_video)
    warm = synthetic.make_video_set(out_dir, s["n_warmup"], s["seed"] + 1, s["tasks"], prefix="w", **vid)
    warm += [dict(r, id="w" + r["id"]) for r in synthetic.make_activation_set(
        os.path.join(out_dir, "warmup_activation"), s["n_train_activation"], s["seed"] + 2, s["video_size"])]
    for r in warm:
        if r.get("image"):
            r["image"] = os.path.join("warmup_activation", r["image"])
    write_jsonl(warmup_out, warm)
    write_jsonl(train_video, synthetic.make_video_set(out_dir, s["n_train_video"], s["seed"] + 3, s["tasks"],
                                                      prefix="v", **vid))
    write_jsonl(train_activation, synthetic.make_activation_set(out_dir, s["n_train_activation"], s["seed"] + 4,
                                                                s["video_size"]))
    sizes = {"vsi_bench": s["n_benchmark"], **s.get("benchmark_sizes", {})}
    offsets = {name: 5 + i for i, name in enumerate(("vsi_bench", *synthetic_benchmarks.WRITERS))}
    for item in benchmarks:
        name, _, path = item.partition("=")
        if name not in sizes or not path:
            raise click.BadParameter(f"{item!r}: expected NAME=PATH with NAME one of {', '.join(sizes)}",
                                     param_hint="--benchmark")
        write_json(path, synthetic_benchmarks.write_benchmark(name, os.path.dirname(path), sizes[name],
                                                              s["seed"] + offsets[name], **vid))


if __name__ == "__main__":
    main()
