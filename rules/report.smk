# The run's figures for `snakemake --report report.html`: VerIPO's Figure-1 view (GRPO and DPO
# curves, the verifier's verdicts and pairs, inconsistency and scores along the chain) and the wall
# time of every rule. veripo/report/plan.py names what each figure reads and where it goes in the
# report; captions are report/<name>.rst. As a target: `report_figures` (the rule's name).
from veripo.report.plan import figures as report_figure_list
from veripo.report.plan import manifest as report_manifest
from veripo.report.plan import manifest_paths

REPORT_MANIFEST = report_manifest(
    config["iterations"], config["report"]["benchmarks"], config["report"]["eval_grpo"]
)
REPORT_FIGURES = report_figure_list(
    config["iterations"], config["report"]["benchmarks"]
)


rule report_figures:
    input:
        **manifest_paths(REPORT_MANIFEST),
    output:
        [
            report(
                f"figures/{f.name}.png",
                caption=f"../report/{f.caption}.rst",
                category=f.category,
                subcategory=f.subcategory,
            )
            for f in REPORT_FIGURES
        ],
    log:
        "logs/report_figures/report_figures.log",
    benchmark:
        "logs/benchmarks/report_figures/report_figures.tsv"
    conda:
        # not cpu.yaml: counting the rollouts' think tokens needs the stage's tokenizer (tokenizers), as
        # in rule compare, which measures the rollouts with the same code
        "../envs/train.yaml"
    resources:
        **rule_resources("report_figures"),
    params:
        cmd=python_script("report_figures"),
        manifest=as_json(REPORT_MANIFEST),
        # what the rollouts are verified with: no figure's number depends on its values (think
        # tokens and the rule judge's verdicts do not), so editing it reruns nothing
        verifier=NotARerunTrigger(as_json(config["verifier"])),
        benchmarks_dir="logs/benchmarks",
    shell:
        "{params.cmd} --manifest {params.manifest:q} --verifier {params.verifier:q} "
        "--benchmarks-dir {params.benchmarks_dir:q} {output:q} 2> {log:q}"
