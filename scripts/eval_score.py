"""Score JSON of one benchmark run: VerIPO's scores, the judge's inconsistency rate, provenance."""
import _bootstrap  # noqa: F401
import click

from veripo.cli import JSON, main_guard, setup_logging


@click.command()
@click.option("--benchmark", required=True)
@click.option("--predictions", required=True)
@click.option("--model", "model_path", required=True, help="the checkpoint that was evaluated")
@click.option("--config", "cfg", type=JSON, required=True, help="{eval, verifier}")
@click.option("--out", required=True)
@main_guard
def main(benchmark, predictions, model_path, cfg, out):
    setup_logging()
    from veripo import provenance, verifier
    from veripo.jsonio import read_jsonl, write_json
    from veripo.scoring import read_predictions, score_predictions

    items = read_predictions(predictions, benchmark)
    result = score_predictions(benchmark, items)
    judge = verifier.get_judge(cfg["verifier"]["judge"])
    verdicts = [judge(r["response"])["verdict"] for r in read_jsonl(predictions)]
    result["inconsistency"] = {
        "judge": cfg["verifier"]["judge"]["backend"],
        "rate": 100.0 * sum(v == verifier.INCONSISTENT for v in verdicts) / max(1, len(verdicts)),
        "counts": {k: verdicts.count(k) for k in (verifier.CONSISTENT, verifier.INCONSISTENT, verifier.UNKNOWN)},
    }
    result["provenance"] = {"checkpoint": model_path, "checkpoint_sha256": provenance.checkpoint_hash(model_path),
                            "generation": {k: v for k, v in cfg["eval"].items() if k != "benchmarks"}}
    write_json(out, result)
    click.echo(f"{benchmark}: overall {result['overall']:.2f} (n={result['n']}), "
               f"inconsistency {result['inconsistency']['rate']:.2f}%", err=True)


if __name__ == "__main__":
    main()
