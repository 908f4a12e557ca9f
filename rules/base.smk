# The tiny base: built offline from the config, then warmed up on synthetic reasoning traces.

if TINY:

    rule base_build_tiny:
        output:
            model=directory("base/init"),
            info="base/model.json",
        params:
            py=PYTHON,
            scripts=SCRIPTS,
            spec=lambda wc: as_arg(config.get("tiny_model", {})),
            prompts=lambda wc: as_arg(config["prompts"]),
        resources:
            **rule_resources("base_build_tiny"),
        log:
            "logs/base_build_tiny/base_build_tiny.log",
        benchmark:
            "logs/benchmarks/base_build_tiny/base_build_tiny.tsv"
        conda:
            "../envs/train.yaml"
        shell:
            "{params.py} {params.scripts}/base_build_tiny.py --spec {params.spec} --prompts {params.prompts} "
            "--out {output.model} --info {output.info} 2> {log}"


    rule base_warmup:
        input:
            model="base/init",
            data="data/warmup.jsonl",
        output:
            model=directory("base/model"),
            metrics="base/warmup_metrics.jsonl",
        params:
            py=PYTHON,
            scripts=SCRIPTS,
            cfg=lambda wc: as_arg(policy_args("warmup")),
        threads: 2
        resources:
            **rule_resources("base_warmup"),
        log:
            "logs/base_warmup/base_warmup.log",
        benchmark:
            "logs/benchmarks/base_warmup/base_warmup.tsv"
        conda:
            "../envs/train.yaml"
        shell:
            "{params.py} {params.scripts}/base_warmup.py --model {input.model} --data {input.data} --config {params.cfg} "
            "--out {output.model} --metrics {output.metrics} 2> {log}"
