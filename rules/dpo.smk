# Pair-Fast-Align: pairs from the verdicts, then DPO from iteration k's GRPO model.


rule dpo_build_pairs:
    input:
        rollouts="iter{iter}/grpo/rollouts.jsonl",
        verdicts="iter{iter}/verifier/verdicts.jsonl",
    output:
        pairs="iter{iter}/dpo/pairs.jsonl",
        stats="iter{iter}/dpo/pair_stats.json",
    params:
        cfg=lambda wc: as_arg(config["pairs"]),
    log:
        "logs/dpo_build_pairs/iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_build_pairs/iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{PYTHON} {SCRIPTS}/dpo_build_pairs.py --rollouts {input.rollouts} --verdicts {input.verdicts} "
        "--config {params.cfg} --out {output.pairs} --stats {output.stats} 2> {log}"


rule dpo_train:
    input:
        model="iter{iter}/grpo/model",
        pairs="iter{iter}/dpo/pairs.jsonl",
    output:
        model=directory("iter{iter}/dpo/model"),
        metrics="iter{iter}/dpo/metrics.jsonl",
    params:
        cfg=lambda wc: as_arg(policy_args("dpo")),
        ckpt="checkpoints/iter{iter}/dpo",
        launch=launcher("dpo_train"),
    threads: 2
    resources:
        **training_resources("dpo_train"),
    log:
        "logs/dpo_train/iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_train/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.launch} {SCRIPTS}/dpo_train.py --model {input.model} --pairs {input.pairs} --config {params.cfg} "
        "--out-model {output.model} --out-metrics {output.metrics} --checkpoint-dir {params.ckpt} 2> {log}"
