# Pair-Fast-Align: pairs from the verdicts, then DPO from iteration k's GRPO model.
#
# dpo_build_pairs is a checkpoint: once the pairs exist, get_dpo_pairs() compares their
# number with dpo.min_pairs. Enough: dpo_train learns from them. Too few and
# on_too_few_pairs is "stop": the workflow stops with a message naming the iteration and
# the numbers. "skip": the DAG gains dpo_skip_pairs, dpo_train gets its empty pair file
# and saves the GRPO model unchanged, so iterK/dpo/model (what model_of_iteration()
# names) always exists and is then the GRPO model.


checkpoint dpo_build_pairs:
    input:
        rollouts=get_verifier_rollouts,
        verdicts="{run}iter{iter}/verifier/verdicts.jsonl",
        model="{run}iter{iter}/grpo/model",
    output:
        pairs="{run}iter{iter}/dpo/pairs.jsonl",
        stats="{run}iter{iter}/dpo/pair_stats.json",
        settings="{run}iter{iter}/dpo/pairs_settings.json",
    log:
        "logs/dpo_build_pairs/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_build_pairs/{run}iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        **rule_resources("dpo_build_pairs"),
    params:
        cmd=python_script("dpo_build_pairs"),
        cfg=lambda wc: as_json(cfg_of(wc)["pairs"]),
    shell:
        "{params.cmd} --rollouts {input.rollouts:q} --verdicts {input.verdicts:q} "
        "--model {input.model:q} --config {params.cfg:q} --out {output.pairs:q} "
        "--stats {output.stats:q} --out-settings {output.settings:q} 2> {log:q}"


# Only in the DAG when get_dpo_pairs() decides "skip": the empty pair set dpo_train
# then gets.
rule dpo_skip_pairs:
    input:
        stats="{run}iter{iter}/dpo/pair_stats.json",
    output:
        "{run}iter{iter}/dpo/pairs_skipped.jsonl",
    log:
        "logs/dpo_skip_pairs/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_skip_pairs/{run}iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        **rule_resources("dpo_build_pairs"),
    params:
        msg=get_dpo_skip_message,
    message:
        "Too few DPO pairs in iteration {wildcards.iter}: its DPO stage is skipped "
        "(dpo.on_too_few_pairs: skip)"
    shell:
        "printf '%s\\n' {params.msg:q} > {log:q} && : > {output:q}"


rule dpo_train:
    input:
        model="{run}iter{iter}/grpo/model",
        pairs=get_dpo_pairs,
    output:
        model=directory("{run}iter{iter}/dpo/model"),
        metrics="{run}iter{iter}/dpo/metrics.jsonl",
        heldout="{run}iter{iter}/dpo/heldout.json",
        settings="{run}iter{iter}/dpo/settings.json",
    log:
        "logs/dpo_train/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/dpo_train/{run}iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    threads: rule_threads("dpo_train")
    resources:
        **training_resources("dpo_train"),
    params:
        **settings_params(lambda wc: policy_args("dpo", cfg=cfg_of(wc))),
        ckpt="checkpoints/{run}iter{iter}/dpo",
        cmd=launcher("dpo_train"),
        ranks=launch_ranks("dpo_train"),
        script=script_path("dpo_train"),
        tracking=TRACKING,
    shell:
        "{params.cmd} {params.ranks:q} -- {params.script:q} "
        "--model {input.model:q} --pairs {input.pairs:q} "
        "--config {params.cfg:q} --run-settings {params.run:q} "
        "--out-model {output.model:q} --out-metrics {output.metrics:q} "
        "--out-heldout {output.heldout:q} --out-settings {output.settings:q} "
        "--checkpoint-dir {params.ckpt:q} --tracking {params.tracking:q} "
        "--tracking-name dpo_train/{wildcards.run:q}iter{wildcards.iter:q} 2> {log:q}"
