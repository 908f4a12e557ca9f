# The tiny base: built offline from the config, then warmed up on synthetic reasoning
# traces.

if TINY:

    rule base_build_tiny:
        output:
            model=directory("base/init"),
            info="base/model.json",
        log:
            "logs/base_build_tiny/base_build_tiny.log",
        benchmark:
            "logs/benchmarks/base_build_tiny/base_build_tiny.tsv"
        conda:
            "../envs/train.yaml"
        resources:
            **rule_resources("base_build_tiny"),
        params:
            cmd=python_script("base_build_tiny"),
            spec=lambda wc: as_json(config.get("tiny_model", {})),
            prompts=lambda wc: as_json(config["prompts"]),
        shell:
            "{params.cmd} --spec {params.spec:q} --prompts {params.prompts:q} "
            "--out {output.model:q} --info {output.info:q} 2> {log:q}"

    rule base_warmup:
        input:
            model="base/init",
            data="data/warmup.jsonl",
        output:
            model=directory("base/model"),
            metrics="base/warmup_metrics.jsonl",
            settings="base/warmup_settings.json",
        log:
            "logs/base_warmup/base_warmup.log",
        benchmark:
            "logs/benchmarks/base_warmup/base_warmup.tsv"
        conda:
            "../envs/train.yaml"
        threads: rule_threads("base_warmup")
        resources:
            **rule_resources("base_warmup"),
        params:
            **settings_params(lambda wc: policy_args("warmup")),
            cmd=python_script("base_warmup"),
            tracking=TRACKING,
        shell:
            "{params.cmd} --model {input.model:q} --data {input.data:q} "
            "--config {params.cfg:q} --run-settings {params.run:q} --out {output.model:q} "
            "--metrics {output.metrics:q} --out-settings {output.settings:q} "
            "--tracking {params.tracking:q} --tracking-name base_warmup/base_warmup "
            "2> {log:q}"
