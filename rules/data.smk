# Synthetic data for the embedded default (no downloads): warm-up queries, training sets, and question
# files in the six benchmark formats (data/bench/<name>.json, videos under data/bench/).
SYN = config["data"]["synthetic"]
SYN_BENCHMARKS = {name: f"data/bench/{name}.json" for name in ["vsi_bench", *SYN.get("benchmark_sizes", {})]}

if SYN["enabled"]:

    rule data_synthetic:
        output:
            warmup="data/warmup.jsonl",
            train_video=config["data"]["train_video"],
            train_activation=config["data"]["train_activation"],
            **SYN_BENCHMARKS,
        params:
            cmd=python_script("data_synthetic"),
            spec=lambda wc: as_json(SYN),
            benchmarks=[arg for name, path in SYN_BENCHMARKS.items() for arg in ("--benchmark", f"{name}={path}")],
        resources:
            **rule_resources("data_synthetic"),
        log:
            "logs/data_synthetic/data_synthetic.log",
        benchmark:
            "logs/benchmarks/data_synthetic/data_synthetic.tsv"
        conda:
            "../envs/cpu.yaml"
        shell:
            "{params.cmd:q} --spec {params.spec:q} --warmup {output.warmup:q} "
            "--train-video {output.train_video:q} --train-activation {output.train_activation:q} "
            "{params.benchmarks:q} 2> {log:q}"
