# Benchmark evaluation of any checkpoint: resumable generation, then VerIPO's scoring.
#   base/eval/{bench}.json        the base model
#   iter{K}/eval/{bench}.json     the model of iteration K (iter0: activation GRPO, K >= 1: DPO)
#   iter{K}/eval_grpo/{bench}.json  iteration K's GRPO checkpoint (before its DPO)
rule eval_generate:
    input:
        model=eval_model_input,
        questions=lambda wc: bench_cfg(wc)["questions"],
    output:
        predictions="{ckpt}/{evaldir}/{bench}.predictions.jsonl",
        run_info="{ckpt}/{evaldir}/{bench}.run.json",
    wildcard_constraints:
        ckpt=r"base|iter\d+",
        evaldir=r"eval|eval_grpo",
    params:
        cmd=python_script("eval_generate"),
        model=eval_model,
        video_root=lambda wc: bench_cfg(wc)["video_root"],
        cfg=lambda wc: as_json(job_settings(config, wc.bench)),
    threads: 2
    resources:
        **rule_resources("eval_generate"),
    log:
        "logs/eval_generate/{ckpt}_{evaldir}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_generate/{ckpt}_{evaldir}_{bench}.tsv"
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.cmd:q} --model {params.model:q} --benchmark {wildcards.bench:q} "
        "--questions {input.questions:q} --video-root {params.video_root:q} --config {params.cfg:q} "
        "--out {output.predictions:q} --run-info {output.run_info:q} 2> {log:q}"


rule eval_score:
    input:
        predictions="{ckpt}/{evaldir}/{bench}.predictions.jsonl",
        run_info="{ckpt}/{evaldir}/{bench}.run.json",
        questions=lambda wc: bench_cfg(wc)["questions"],
        model=eval_model_input,
    output:
        "{ckpt}/{evaldir}/{bench}.json",
    wildcard_constraints:
        ckpt=r"base|iter\d+",
        evaldir=r"eval|eval_grpo",
    params:
        cmd=python_script("eval_score"),
        model=eval_model,
        cfg=lambda wc: as_json({"verifier": {"judge": config["verifier"]["judge"]}}),
    resources:
        **rule_resources("eval_score"),
    log:
        "logs/eval_score/{ckpt}_{evaldir}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_score/{ckpt}_{evaldir}_{bench}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{params.cmd:q} --benchmark {wildcards.bench:q} --predictions {input.predictions:q} "
        "--run-info {input.run_info:q} --questions {input.questions:q} --model {params.model:q} "
        "--config {params.cfg:q} --out {output:q} 2> {log:q}"
