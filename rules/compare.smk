# The method's effect: every arm of report.arms under every seed of report.seeds, built as
# arms/<arm>/seed<S>/... (config `arms`), then compared. `snakemake compare` builds it all.
from veripo.arms import compare_inputs, compare_manifest

COMPARE_MANIFEST = compare_manifest(config)
COMPARE_FIGURES = [
    *[f"figures/compare/score_{bench}.png" for bench in config["report"]["benchmarks"]],
    *[
        f"figures/compare/{name}.png"
        for name in (
            "rollout_accuracy",
            "response_length",
            "think_length",
            "inconsistency",
            "grpo_along_iterations",
            "cost",
        )
    ],
]


rule compare:
    input:
        compare_inputs(COMPARE_MANIFEST),
    output:
        summary="compare/summary.json",
        table="compare/summary.md",
        figures=COMPARE_FIGURES,
    log:
        "logs/compare/compare.log",
    benchmark:
        "logs/benchmarks/compare/compare.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        **rule_resources("compare"),
    params:
        cmd=python_script("compare_arms"),
        manifest=lambda wc: as_json(COMPARE_MANIFEST),
    shell:
        "{params.cmd} --manifest {params.manifest:q} --summary {output.summary:q} "
        "--table {output.table:q} {output.figures:q} 2> {log:q}"
