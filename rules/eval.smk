# Benchmark evaluation of iteration k's model: resumable generation, then VerIPO's scoring.


def bench_cfg(wildcards):
    return config["eval"]["benchmarks"][wildcards.bench]


rule eval_generate:
    input:
        model=lambda wc: model_of_iteration(wc.iter),
        questions=lambda wc: bench_cfg(wc)["questions"],
    output:
        "iter{iter}/eval/{bench}.predictions.jsonl",
    params:
        video_root=lambda wc: bench_cfg(wc)["video_root"],
        cfg=lambda wc: as_arg(policy_args("eval")),
        partial="iter{iter}/eval/{bench}.predictions.partial.jsonl",
    threads: 2
    log:
        "logs/eval_generate/iter{iter}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_generate/iter{iter}_{bench}.tsv"
    conda:
        "../envs/eval.yaml"
    shell:
        "{PYTHON} {SCRIPTS}/eval_generate.py --model {input.model} --benchmark {wildcards.bench} "
        "--questions {input.questions} --video-root {params.video_root} --config {params.cfg} "
        "--out {output} --partial {params.partial} 2> {log}"


rule eval_score:
    input:
        predictions="iter{iter}/eval/{bench}.predictions.jsonl",
        model=lambda wc: model_of_iteration(wc.iter),
    output:
        "iter{iter}/eval/{bench}.json",
    params:
        cfg=lambda wc: as_arg({"eval": config["eval"], "verifier": config["verifier"]}),
    log:
        "logs/eval_score/iter{iter}_{bench}.log",
    benchmark:
        "logs/benchmarks/eval_score/iter{iter}_{bench}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "{PYTHON} {SCRIPTS}/eval_score.py --benchmark {wildcards.bench} --predictions {input.predictions} "
        "--model {input.model} --config {params.cfg} --out {output} 2> {log}"
