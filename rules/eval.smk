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
        py=PYTHON,
        scripts=SCRIPTS,
        model=eval_model,
        video_root=lambda wc: bench_cfg(wc)["video_root"],
        cfg=lambda wc: as_arg(job_settings(config, wc.bench)),
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
        "{params.py} {params.scripts}/eval_generate.py --model {params.model} --benchmark {wildcards.bench} "
        "--questions {input.questions} --video-root {params.video_root} --config {params.cfg} "
        "--out {output.predictions} --run-info {output.run_info} 2> {log}"


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
        py=PYTHON,
        scripts=SCRIPTS,
        model=eval_model,
        cfg=lambda wc: as_arg({"verifier": {"judge": config["verifier"]["judge"]}}),
    resources:
        **rule_resources("eval_score"),
    log:
        "logs/eval_score/{ckpt}_{evaldir}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_score/{ckpt}_{evaldir}_{bench}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{params.py} {params.scripts}/eval_score.py --benchmark {wildcards.bench} --predictions {input.predictions} "
        "--run-info {input.run_info} --questions {input.questions} --model {params.model} "
        "--config {params.cfg} --out {output} 2> {log}"
