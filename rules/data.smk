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


# Public video-QA files (config data.imports) turned into training queries; point
# data.train_video (or train_activation) at data/imported/<name>.jsonl to train on one.
IMPORTS = config["data"].get("imports", {})
IMPORTED = {f"data/imported/{name}.jsonl" for name in IMPORTS}
if SYN["enabled"]:
    for key in ("train_video", "train_activation"):
        if os.path.normpath(config["data"][key]) in IMPORTED:
            raise WorkflowError(
                f"config key 'data.{key}': {config['data'][key]} is an import's output, "
                "which data_synthetic would write too; set data.synthetic.enabled: false"
            )

if IMPORTS:

    rule data_import:
        input:
            source=lambda wc: IMPORTS[wc.name]["source"],
        output:
            queries="data/imported/{name}.jsonl",
            rejected="data/imported/{name}.rejected.jsonl",
            stats="data/imported/{name}.stats.json",
        log:
            "logs/data_import/{name}.log",
        benchmark:
            "logs/benchmarks/data_import/{name}.tsv"
        wildcard_constraints:
            name="|".join(IMPORTS),
        conda:
            "../envs/cpu.yaml"
        resources:
            **rule_resources("data_import"),
        params:
            cmd=python_script("data_import"),
            spec=lambda wc: as_json(IMPORTS[wc.name]),
            max_question_chars=config["data"]["max_question_chars"],
        shell:
            "{params.cmd:q} --name {wildcards.name:q} --spec {params.spec:q} "
            "--out {output.queries:q} --rejected {output.rejected:q} "
            "--stats {output.stats:q} --max-question-chars {params.max_question_chars} 2> {log:q}"
