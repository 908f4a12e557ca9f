# The Rollout-Aware Verifier over the rollouts of iteration k's video GRPO stage: those
# logged during training, or (verifier.rollouts.source: fresh) a new sampling pass from
# the stage's checkpoint.


rule verifier_sample:
    input:
        model="{run}iter{iter}/grpo/model",
        data=get_grpo_queries,
    output:
        rollouts="{run}iter{iter}/verifier/rollouts.jsonl",
        settings="{run}iter{iter}/verifier/sample_settings.json",
    log:
        "logs/verifier_sample/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/verifier_sample/{run}iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        **rule_resources("verifier_sample"),
    params:
        **settings_params(get_verifier_sample_settings),
        cmd=python_script("verifier_sample"),
    shell:
        "{params.cmd} --model {input.model:q} --data {input.data:q} "
        "--config {params.cfg:q} --run-settings {params.run:q} --iteration {wildcards.iter:q} "
        "--out {output.rollouts:q} --out-settings {output.settings:q} 2> {log:q}"


rule verifier_judge:
    input:
        rollouts=get_verifier_rollouts,
        model="{run}iter{iter}/grpo/model",
    output:
        verdicts="{run}iter{iter}/verifier/verdicts.jsonl",
        stats="{run}iter{iter}/verifier/stats.json",
        settings="{run}iter{iter}/verifier/settings.json",
    log:
        "logs/verifier_judge/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/verifier_judge/{run}iter{iter}.tsv"
    conda:
        conda_env("verifier_judge", "train")
    resources:
        **rule_resources("verifier_judge"),
    params:
        **settings_params(lambda wc: cfg_of(wc)["verifier"], root="verifier"),
        cmd=python_script("verifier_judge"),
    shell:
        "VERIPO_MEM_MB={resources.mem_mb} {params.cmd} --rollouts {input.rollouts:q} --model {input.model:q} "
        "--config {params.cfg:q} --run-settings {params.run:q} --out {output.verdicts:q} "
        "--stats {output.stats:q} --out-settings {output.settings:q} 2> {log:q}"
