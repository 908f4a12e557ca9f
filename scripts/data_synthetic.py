"""Write the synthetic data: warm-up queries, video and activation training sets, a VSI-style benchmark."""
import os

import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--spec", type=JSON, required=True, help="config data.synthetic section (JSON)")
@click.option("--warmup", "warmup_out", required=True)
@click.option("--train-video", required=True)
@click.option("--train-activation", required=True)
@click.option("--benchmark", required=True, help="VSI-Bench-format question file to write")
@main_guard
def main(spec, warmup_out, train_video, train_activation, benchmark):
    setup_logging()
    from veripo import synthetic
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
    write_json(benchmark, synthetic.make_vsi_style_benchmark(os.path.dirname(benchmark), s["n_benchmark"],
                                                             s["seed"] + 5, **vid))


if __name__ == "__main__":
    main()
