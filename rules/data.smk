# Synthetic data (no downloads): warm-up queries, training sets, and question files in
# the six benchmark formats (data/bench/<name>.json, videos under data/bench/). All of it
# for the embedded default; with own data (data.synthetic.enabled: false) the tiny
# base's warm-up traces still, since they are part of building that model (their
# scenes give the traces' reasoning; no imported record has one), and the sets
# data.synthetic.keep names.
SYN_KEEP = (
    {"train_video", "train_activation", "benchmarks"}
    if SYN["enabled"]
    else set(SYN.get("keep", []))
)
SYN_SETS = {"warmup": "data/warmup.jsonl"} if SYN["enabled"] or TINY else {}
SYN_SETS.update(
    {k: config["data"][k] for k in ("train_video", "train_activation") if k in SYN_KEEP}
)
SYN_WRITTEN_BENCHMARKS = SYN_BENCHMARKS if "benchmarks" in SYN_KEEP else {}

if SYN_SETS or SYN_WRITTEN_BENCHMARKS:

    rule data_synthetic:
        output:
            **SYN_WRITTEN_BENCHMARKS,
            **SYN_SETS,
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
            sets=[
                arg
                for name, path in SYN_SETS.items()
                for arg in (f"--{name.replace('_', '-')}", path)
            ],
            benchmarks=[
                arg
                for name, path in SYN_WRITTEN_BENCHMARKS.items()
                for arg in ("--benchmark", f"{name}={path}")
            ],
        shell:
            "{params.cmd} --spec {params.spec:q} {params.sets:q} "
            "{params.benchmarks:q} 2> {log:q}"


# Public video-QA files (config data.imports) turned into training queries: the video
# ones in data/imported/<name>.jsonl (for data.train_video), the image and text ones in
# <name>.activation.jsonl (for data.train_activation).
IMPORTS = config["data"].get("imports", {})
IMPORTED = {
    f"data/imported/{name}{suffix}.jsonl"
    for name in IMPORTS
    for suffix in ("", ".activation")
}
for key in ("train_video", "train_activation"):
    if key in SYN_SETS and os.path.normpath(config["data"][key]) in IMPORTED:
        raise WorkflowError(
            f"config key 'data.{key}': {config['data'][key]} is an import's output, "
            "which data_synthetic would write too; "
            + (
                "set data.synthetic.enabled: false"
                if SYN["enabled"]
                else f"take {key} out of data.synthetic.keep"
            )
        )

if IMPORTS:

    rule data_import:
        input:
            source=lambda wc: IMPORTS[wc.name]["source"],
        output:
            queries="data/imported/{name}.jsonl",
            activation="data/imported/{name}.activation.jsonl",
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
            "{params.cmd} --name {wildcards.name:q} --spec {params.spec:q} "
            "--out {output.queries:q} --activation-out {output.activation:q} "
            "--rejected {output.rejected:q} "
            "--stats {output.stats:q} --max-question-chars {params.max_question_chars} 2> {log:q}"
