# Benchmark evaluation of any checkpoint: resumable generation, then VerIPO's scoring.
#   base/eval/{bench}.json          the base model
#   iter{K}/eval/{bench}.json       the model of iteration K (iter0: activation GRPO,
#                                   K >= 1: DPO)
#   iter{K}/eval_grpo/{bench}.json  iteration K's GRPO checkpoint (before its DPO)


rule eval_generate:
    input:
        model=get_eval_model_input,
        questions=get_eval_questions,
    output:
        predictions="{ckpt}/{evaldir}/{bench}.predictions.jsonl",
        run_info="{ckpt}/{evaldir}/{bench}.run.json",
    log:
        "logs/eval_generate/{ckpt}_{evaldir}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_generate/{ckpt}_{evaldir}_{bench}.tsv"
    conda:
        conda_env("eval_generate", "eval")
    threads: rule_threads("eval_generate")
    resources:
        **rule_resources("eval_generate"),
    params:
        **settings_params(get_eval_settings),
        cmd=python_script("eval_generate"),
        model=get_eval_model,
        video_root=get_eval_video_root,
    shell:
        "VERIPO_MEM_MB={resources.mem_mb} {params.cmd} --model {params.model:q} --benchmark {wildcards.bench:q} "
        "--questions {input.questions:q} --video-root {params.video_root:q} "
        "--config {params.cfg:q} --run-settings {params.run:q} --out {output.predictions:q} "
        "--run-info {output.run_info:q} 2> {log:q}"


rule eval_score:
    input:
        predictions="{ckpt}/{evaldir}/{bench}.predictions.jsonl",
        run_info="{ckpt}/{evaldir}/{bench}.run.json",
        questions=get_eval_questions,
        model=get_eval_model_input,
        baseline=get_eval_baseline_predictions,
    output:
        "{ckpt}/{evaldir}/{bench}.json",
    log:
        "logs/eval_score/{ckpt}_{evaldir}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_score/{ckpt}_{evaldir}_{bench}.tsv"
    conda:
        conda_env("eval_score", "train" if JUDGE_NEEDS_TORCH else "cpu")
    resources:
        **rule_resources("eval_score"),
    params:
        **settings_params(
            lambda wc: {"verifier": {"judge": config["verifier"]["judge"]}}
        ),
        cmd=python_script("eval_score"),
        model=get_eval_model,
        baseline=lambda wc, input: (
            ["--baseline-predictions", input.baseline[0]] if input.baseline else []
        ),
    shell:
        "VERIPO_MEM_MB={resources.mem_mb} {params.cmd} --benchmark {wildcards.bench:q} "
        "--predictions {input.predictions:q} "
        "--run-info {input.run_info:q} --questions {input.questions:q} "
        "--model {params.model:q} --config {params.cfg:q} --run-settings {params.run:q} "
        "{params.baseline:q} --out {output:q} 2> {log:q}"
