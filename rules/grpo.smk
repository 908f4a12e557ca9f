# GRPO: iteration 0 is reasoning activation on text/image queries; iteration k >= 1 is
# video GRPO starting from iteration k-1's model, on the queries the curriculum kept.


rule grpo_train:
    input:
        model=get_grpo_start_input,
        data=get_grpo_queries,
    output:
        model=directory("{run}iter{iter}/grpo/model"),
        rollouts="{run}iter{iter}/grpo/rollouts.jsonl",
        metrics="{run}iter{iter}/grpo/metrics.jsonl",
        settings="{run}iter{iter}/grpo/settings.json",
    log:
        "logs/grpo_train/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/grpo_train/{run}iter{iter}.tsv"
    conda:
        conda_env("grpo_train", "train")
    threads: rule_threads("grpo_train")
    resources:
        **training_resources("grpo_train"),
    params:
        **settings_params(get_grpo_settings),
        start=get_grpo_start_model,
        stage=get_grpo_stage_name,
        ckpt="checkpoints/{run}iter{iter}/grpo",
        cmd=launcher("grpo_train"),
        ranks=launch_ranks("grpo_train"),
        script=script_path("grpo_train"),
        tracking=TRACKING,
    shell:
        "VERIPO_MEM_MB={resources.mem_mb} {params.cmd} {params.ranks:q} -- {params.script:q} "
        "--model {params.start:q} --data {input.data:q} "
        "--config {params.cfg:q} --run-settings {params.run:q} --iteration {wildcards.iter:q} "
        "--stage {params.stage:q} --out-model {output.model:q} "
        "--out-rollouts {output.rollouts:q} --out-metrics {output.metrics:q} "
        "--out-settings {output.settings:q} "
        "--checkpoint-dir {params.ckpt:q} --tracking {params.tracking:q} "
        "--tracking-name grpo_train/{wildcards.run:q}iter{wildcards.iter:q} 2> {log:q}"


rule curriculum_filter:
    input:
        data=get_grpo_queries,
        rollouts="{run}iter{iter}/grpo/rollouts.jsonl",
    output:
        "{run}iter{iter}/data/train_video.jsonl",
    log:
        "logs/curriculum_filter/{run}iter{iter}.log",
    benchmark:
        "logs/benchmarks/curriculum_filter/{run}iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        **rule_resources("curriculum_filter"),
    params:
        cmd=python_script("curriculum_filter"),
        cfg=lambda wc: as_json(cfg_of(wc)["curriculum"]),
    shell:
        "{params.cmd} --data {input.data:q} --rollouts {input.rollouts:q} "
        "--config {params.cfg:q} --out {output:q} 2> {log:q}"
