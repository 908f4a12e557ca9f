# GRPO: iteration 0 is reasoning activation on text/image queries; iteration k >= 1 is video GRPO
# starting from iteration k-1's model, on the queries the curriculum kept.


rule grpo_train:
    input:
        model=grpo_start_input,
        data=grpo_queries,
    output:
        model=directory("iter{iter}/grpo/model"),
        rollouts="iter{iter}/grpo/rollouts.jsonl",
        metrics="iter{iter}/grpo/metrics.jsonl",
    params:
        start=grpo_start_model,
        cfg=grpo_args,
        stage=lambda wc: "activation" if int(wc.iter) == 0 else "video",
        ckpt="checkpoints/iter{iter}/grpo",
        cmd=launcher("grpo_train"),
    threads: 2
    resources:
        **training_resources("grpo_train"),
    log:
        "logs/grpo_train/iter{iter}.log",
    benchmark:
        "logs/benchmarks/grpo_train/iter{iter}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.cmd:q} --model {params.start:q} --data {input.data:q} --config {params.cfg:q} "
        "--iteration {wildcards.iter:q} --stage {params.stage:q} --out-model {output.model:q} "
        "--out-rollouts {output.rollouts:q} --out-metrics {output.metrics:q} "
        "--checkpoint-dir {params.ckpt:q} 2> {log:q}"


rule curriculum_filter:
    input:
        data=grpo_queries,
        rollouts="iter{iter}/grpo/rollouts.jsonl",
    output:
        "iter{iter}/data/train_video.jsonl",
    params:
        cmd=python_script("curriculum_filter"),
        cfg=lambda wc: as_json(config["curriculum"]),
    resources:
        **rule_resources("curriculum_filter"),
    log:
        "logs/curriculum_filter/iter{iter}.log",
    benchmark:
        "logs/benchmarks/curriculum_filter/iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{params.cmd:q} --data {input.data:q} --rollouts {input.rollouts:q} "
        "--config {params.cfg:q} --out {output:q} 2> {log:q}"
