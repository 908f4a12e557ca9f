# The Rollout-Aware Verifier over the rollouts of iteration k's video GRPO stage.


rule verifier_judge:
    input:
        rollouts="iter{iter}/grpo/rollouts.jsonl",
        model="iter{iter}/grpo/model",
    output:
        verdicts="iter{iter}/verifier/verdicts.jsonl",
        stats="iter{iter}/verifier/stats.json",
    params:
        py=PYTHON,
        scripts=SCRIPTS,
        cfg=lambda wc: as_arg(config["verifier"]),
    resources:
        **rule_resources("verifier_judge"),
    log:
        "logs/verifier_judge/iter{iter}.log",
    benchmark:
        "logs/benchmarks/verifier_judge/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.py} {params.scripts}/verifier_judge.py --rollouts {input.rollouts} --model {input.model} "
        "--config {params.cfg} --out {output.verdicts} --stats {output.stats} 2> {log}"
