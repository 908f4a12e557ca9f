# Synthetic data for the embedded default (no downloads): warm-up queries, training
# sets, and question files in the six benchmark formats (data/bench/<name>.json, videos
# under data/bench/).

if SYN["enabled"]:

    rule data_synthetic:
        output:
            **SYN_BENCHMARKS,
            warmup="data/warmup.jsonl",
            train_video=config["data"]["train_video"],
            train_activation=config["data"]["train_activation"],
        log:
            "logs/data_synthetic/data_synthetic.log",
        benchmark:
            "logs/benchmarks/data_synthetic/data_synthetic.tsv"
        conda:
            "../envs/cpu.yaml"
        resources:
            **rule_resources("data_synthetic"),
        params:
            cmd=python_script("data_synthetic"),
            spec=lambda wc: as_json(SYN),
            benchmarks=[
                arg
                for name, path in SYN_BENCHMARKS.items()
                for arg in ("--benchmark", f"{name}={path}")
            ],
        shell:
            "{params.cmd:q} --spec {params.spec:q} --warmup {output.warmup:q} "
            "--train-video {output.train_video:q} "
            "--train-activation {output.train_activation:q} "
            "{params.benchmarks:q} 2> {log:q}"
