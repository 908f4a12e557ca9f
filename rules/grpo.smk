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
        scripts=SCRIPTS,
        start=grpo_start_model,
        cfg=grpo_args,
        stage=lambda wc: "activation" if int(wc.iter) == 0 else "video",
        ckpt="checkpoints/iter{iter}/grpo",
        launch=launcher("grpo_train"),
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
        "{params.launch} {params.scripts}/grpo_train.py --model {params.start} --data {input.data} --config {params.cfg} "
        "--iteration {wildcards.iter} --stage {params.stage} --out-model {output.model} "
        "--out-rollouts {output.rollouts} --out-metrics {output.metrics} --checkpoint-dir {params.ckpt} 2> {log}"


rule curriculum_filter:
    input:
        data=grpo_queries,
        rollouts="iter{iter}/grpo/rollouts.jsonl",
    output:
        "iter{iter}/data/train_video.jsonl",
    params:
        py=PYTHON,
        scripts=SCRIPTS,
        cfg=lambda wc: as_arg(config["curriculum"]),
    resources:
        **rule_resources("curriculum_filter"),
    log:
        "logs/curriculum_filter/iter{iter}.log",
    benchmark:
        "logs/benchmarks/curriculum_filter/iter{iter}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{params.py} {params.scripts}/curriculum_filter.py --data {input.data} --rollouts {input.rollouts} "
        "--config {params.cfg} --out {output} 2> {log}"
