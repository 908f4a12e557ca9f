# VerIPO: GRPO -> Rollout-Aware Verifier -> DPO, iterated, then benchmark evaluation.
#   snakemake --cores 2 iter3/eval/vsi_bench.json      (local, embedded tiny default)
#   snakemake --profile profiles/slurm iter3/eval/vsi_bench.json \
#       --configfile configs/qwen25vl-7b.yaml
from snakemake.utils import min_version

min_version("9.0")


# The repository default; --configfile FILE ... merges more on top, key by key.
configfile: os.path.join(workflow.basedir, "config.yaml")


# What `snakemake --report report.html` says about the run; the figures come from rule report_figures.
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/grpo.smk"
include: "rules/verifier.smk"
include: "rules/dpo.smk"
include: "rules/eval.smk"
include: "rules/report.smk"
include: "rules/compare.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


# The scores among the files this run was asked for.
onsuccess:
    print(run_summary(requested_files(), os.getcwd()))


# After Snakemake's error blocks, the reason: the end of each failed job's logs (local and SLURM).
onerror:
    report = failed_job_report(log)
    if report:
        print(report, file=sys.stderr)
