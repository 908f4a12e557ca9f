# Synthetic data for the embedded default (no downloads): warm-up queries, training sets, a benchmark.
SYN = config["data"]["synthetic"]

if SYN["enabled"]:

    rule data_synthetic:
        output:
            warmup="data/warmup.jsonl",
            train_video=config["data"]["train_video"],
            train_activation=config["data"]["train_activation"],
            benchmark="data/bench/vsi_bench.json",
        params:
            spec=lambda wc: as_arg(SYN),
        log:
            "logs/data_synthetic/data_synthetic.log",
        benchmark:
            "logs/benchmarks/data_synthetic/data_synthetic.tsv"
        conda:
            "../envs/cpu.yaml"
        shell:
            "{PYTHON} {SCRIPTS}/data_synthetic.py --spec {params.spec} --warmup {output.warmup} "
            "--train-video {output.train_video} --train-activation {output.train_activation} "
            "--benchmark {output.benchmark} 2> {log}"
