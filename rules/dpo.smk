# Pair-Fast-Align: pairs from the verdicts, then DPO from iteration k's GRPO model.
#
# dpo_build_pairs is a checkpoint: once the pairs exist, dpo_train_pairs() compares their number with
# dpo.min_pairs. Enough: dpo_train learns from them. Too few and on_too_few_pairs is "stop": the
# workflow stops with a message naming the iteration and the numbers. "skip": the DAG gains
# dpo_skip_pairs, dpo_train gets its empty pair file and saves the GRPO model unchanged, so
# iterK/dpo/model (what model_of_iteration() names) always exists and is then the GRPO model.
checkpoint dpo_build_pairs:
    input:
        rollouts=verifier_rollouts,
        verdicts="iter{iter}/verifier/verdicts.jsonl",
        model="iter{iter}/grpo/model",
    output:
        pairs="iter{iter}/dpo/pairs.jsonl",
        stats="iter{iter}/dpo/pair_stats.json",
    params:
        py=PYTHON,
        scripts=SCRIPTS,
        cfg=lambda wc: as_arg(config["pairs"]),
    resources:
        **rule_resources("dpo_build_pairs"),
    log:
        "logs/dpo_build_pairs/iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_build_pairs/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.py} {params.scripts}/dpo_build_pairs.py --rollouts {input.rollouts} --verdicts {input.verdicts} "
        "--model {input.model} --config {params.cfg} --out {output.pairs} --stats {output.stats} 2> {log}"


# Only in the DAG when dpo_train_pairs() decides "skip": the empty pair set dpo_train then gets.
rule dpo_skip_pairs:
    input:
        stats="iter{iter}/dpo/pair_stats.json",
    output:
        "iter{iter}/dpo/pairs_skipped.jsonl",
    params:
        msg=lambda wc, input: shlex.quote(
            dpo_gate(int(wc.iter), json.load(open(input.stats))["pairs"], config["dpo"]["min_pairs"], "skip")["message"]
        ),
    message:
        "Too few DPO pairs in iteration {wildcards.iter}: its DPO stage is skipped (dpo.on_too_few_pairs: skip)"
    resources:
        **rule_resources("dpo_build_pairs"),
    log:
        "logs/dpo_skip_pairs/iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_skip_pairs/iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "echo {params.msg} > {log} && : > {output}"


rule dpo_train:
    input:
        model="iter{iter}/grpo/model",
        pairs=dpo_train_pairs,
    output:
        model=directory("iter{iter}/dpo/model"),
        metrics="iter{iter}/dpo/metrics.jsonl",
        heldout="iter{iter}/dpo/heldout.json",
    params:
        scripts=SCRIPTS,
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
        "{params.launch} {params.scripts}/dpo_train.py --model {input.model} --pairs {input.pairs} --config {params.cfg} "
        "--out-model {output.model} --out-metrics {output.metrics} --out-heldout {output.heldout} --checkpoint-dir {params.ckpt} 2> {log}"
