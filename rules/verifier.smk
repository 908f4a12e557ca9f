# The Rollout-Aware Verifier over the rollouts of iteration k's video GRPO stage: those logged during
# training, or (verifier.rollouts.source: fresh) a new sampling pass from the stage's checkpoint.


rule verifier_sample:
    input:
        model="iter{iter}/grpo/model",
        data=grpo_queries,
    output:
        "iter{iter}/verifier/rollouts.jsonl",
    params:
        py=PYTHON,
        scripts=SCRIPTS,
        cfg=lambda wc: as_arg({**policy_args(), "grpo": grpo_stage(config, int(wc.iter)),
                               "rollouts": config["verifier"]["rollouts"]}),
    resources:
        **rule_resources("verifier_sample"),
    log:
        "logs/verifier_sample/iter{iter}.log",
    benchmark:
        "logs/benchmarks/verifier_sample/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.py} {params.scripts}/verifier_sample.py --model {input.model} --data {input.data} --config {params.cfg} "
        "--iteration {wildcards.iter} --out {output} 2> {log}"


rule verifier_judge:
    input:
        rollouts=verifier_rollouts,
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
