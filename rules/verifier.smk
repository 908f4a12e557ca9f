# The Rollout-Aware Verifier over the rollouts of iteration k's video GRPO stage: those logged during
# training, or (verifier.rollouts.source: fresh) a new sampling pass from the stage's checkpoint.


rule verifier_sample:
    input:
        model="iter{iter}/grpo/model",
        data=grpo_queries,
    output:
        "iter{iter}/verifier/rollouts.jsonl",
    params:
        cmd=python_script("verifier_sample"),
        cfg=lambda wc: as_json({**policy_args(), "grpo": grpo_stage(config, int(wc.iter)),
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
        "{params.cmd:q} --model {input.model:q} --data {input.data:q} --config {params.cfg:q} "
        "--iteration {wildcards.iter:q} --out {output:q} 2> {log:q}"


rule verifier_judge:
    input:
        rollouts=verifier_rollouts,
        model="iter{iter}/grpo/model",
    output:
        verdicts="iter{iter}/verifier/verdicts.jsonl",
        stats="iter{iter}/verifier/stats.json",
    params:
        cmd=python_script("verifier_judge"),
        cfg=lambda wc: as_json(config["verifier"]),
    resources:
        **rule_resources("verifier_judge"),
    log:
        "logs/verifier_judge/iter{iter}.log",
    benchmark:
        "logs/benchmarks/verifier_judge/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.cmd:q} --rollouts {input.rollouts:q} --model {input.model:q} "
        "--config {params.cfg:q} --out {output.verdicts:q} --stats {output.stats:q} 2> {log:q}"
