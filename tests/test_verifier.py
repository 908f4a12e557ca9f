from dataclasses import asdict

import pytest

from veripo.verify import verifier
from veripo.verify.judges import Judge, parse_reply
from veripo.prompts import MC_SUFFIX
from veripo.stage_config import VerifierRollouts
from veripo.verify.stats import verdict_statistics

CFG = verifier.VerifierConfig(min_think_tokens=4, ngram=3, max_ngram_repeats=3, max_compression_ratio=3.0,
                              min_text_for_compression=200, numeric_right=0.9, numeric_wrong=0.3,
                              judge={"backend": "rule"},
                              rollouts=VerifierRollouts(source="logged", rollouts_per_query=8, temperature=1.0, seed=0))


class WordTokenizer:
    def encode(self, text, add_special_tokens=False):
        return text.split()


def rollout(text, answer="B", answer_type="multiple_choice", truncated=False):
    return {"rollout_id": "q#0", "query_id": "q", "iteration": 1, "completion": text, "truncated": truncated,
            "query": {"answer": answer, "answer_type": answer_type}}


@pytest.mark.parametrize("think,expected", [
    ("The square moves left. So the answer is B.", "B"),
    ("so the answer is $2$.", "2"),
    ("First the answer is A, but wait, the answer is (C).", "C"),
    ("the answer should be 3.5", "3.5"),
    ("I am not sure.", None),
    ("The answer is Blue.", None),  # a word, not an option letter
])
def test_think_conclusion(think, expected):
    assert verifier.think_conclusion(think) == expected


def test_rule_judge_verdicts():
    assert verifier.rule_judge("<think>x so the answer is B.</think><answer>$B$</answer>")["verdict"] == "CONSISTENT"
    assert verifier.rule_judge("<think>x so the answer is B.</think><answer>(b)</answer>")["verdict"] == "CONSISTENT"
    assert verifier.rule_judge("<think>so the answer is 2.</think><answer>$2.0$</answer>")["verdict"] == "CONSISTENT"
    assert verifier.rule_judge("<think>x so the answer is A.</think><answer>$B$</answer>")["verdict"] == "INCONSISTENT"
    # no stated conclusion: unknown, never silently consistent
    assert verifier.rule_judge("<think>hmm</think><answer>B</answer>")["verdict"] == "UNKNOWN"
    assert verifier.rule_judge("<think>the answer is B</think>")["verdict"] == "UNKNOWN"


def test_repetition_by_ngram_and_compression():
    tokens = "a b c a b c a b c".split()
    assert verifier.max_ngram_count(tokens, 3) == 3
    rep = verifier.check_repetition(tokens, " ".join(tokens), CFG)
    assert not rep["ok"] and "3-gram repeats 3 times" in rep["reasons"][0]
    looping = "The squares move left. " * 20
    assert verifier.compression_ratio(looping) > 3.0
    assert not verifier.check_repetition(["x", "y"], looping, CFG)["ok"]
    assert verifier.check_repetition("one two three four".split(), "one two three four", CFG)["ok"]


def test_verify_length_accuracy_and_consistency():
    v = verifier.verify(rollout("<think>It moves left so the answer is B.</think><answer>$B$</answer>"),
                        WordTokenizer(), CFG)
    assert v["clean"] and v["checks"]["accuracy"]["label"] == "right"
    assert v["checks"]["consistency"]["verdict"] == "CONSISTENT"
    short = verifier.verify(rollout("<think>B</think><answer>$B$</answer>"), WordTokenizer(), CFG)
    assert not short["checks"]["length"]["ok"] and not short["clean"]
    trunc = verifier.verify(rollout("<think>It moves left so the answer is B.</think><answer>$B",
                                    truncated=True), WordTokenizer(), CFG)
    assert "truncated at max_new_tokens" in trunc["checks"]["length"]["reasons"]
    assert not trunc["checks"]["format"]["ok"]


def test_numeric_accuracy_bands():
    def label(ans):
        return verifier.verify(rollout(f"<think>I count them so the answer is {ans}.</think><answer>{ans}</answer>",
                                       answer="10", answer_type="numeric"), WordTokenizer(), CFG)["checks"]["accuracy"]
    assert label("10")["label"] == "right"
    assert label("9.5")["label"] == "right"  # MRA 0.9
    assert label("7")["label"] == "partial"  # MRA 0.5
    assert label("3")["label"] == "wrong"


@pytest.mark.parametrize("reply,expected", [
    ("CONSISTENT", "CONSISTENT"),
    ("Inconsistent", "INCONSISTENT"),
    ("the answer is consistent", "CONSISTENT"),
    ("Verdict: INCONSISTENT", "INCONSISTENT"),
    ("**Consistent**.", "CONSISTENT"),
    ("The final answer is not consistent with the reasoning.", "INCONSISTENT"),
    ("The answer isn't consistent.", "INCONSISTENT"),
    ("It is not inconsistent.", "CONSISTENT"),
    ("CONSISTENT. Had it said B, it would be inconsistent.", "CONSISTENT"),  # mixed: the first word decides
    ("Judgement = consistent; one might call it inconsistent", "CONSISTENT"),  # a labelled verdict wins
    ("<think>A vs B... inconsistent? no.</think>\nVerdict: CONSISTENT", "CONSISTENT"),  # judges that think first
    ("Yes.", "CONSISTENT"),
    ("No, it does not follow.", "INCONSISTENT"),
    ("CONSISTENT or INCONSISTENT", "UNPARSABLE"),  # an echo of the instruction decides nothing
    ("Maybe consistent, maybe inconsistent", "UNPARSABLE"),
    ("consistently wrong", "UNPARSABLE"),
    ("zq zq <|endoftext|>", "UNPARSABLE"),
    ("", "UNPARSABLE"),
    (None, "UNPARSABLE"),
])
def test_parse_reply_variants(reply, expected):
    assert parse_reply(reply) == expected


def test_parse_reply_yes_no_follows_the_config():
    assert parse_reply("yes", yes_is="INCONSISTENT") == "INCONSISTENT"
    assert parse_reply("no", yes_is="INCONSISTENT") == "CONSISTENT"
    assert parse_reply("Yes", yes_is=None) == "UNPARSABLE"


def test_schema_checks_backend_keys(default_config):
    import copy

    from veripo.config import ConfigError, validate_config

    for backend, key in (("hf", "verifier.judge.model"), ("vllm", "verifier.judge.model"),
                         ("http", "verifier.judge.url")):
        cfg = copy.deepcopy(default_config)
        cfg["verifier"]["judge"]["backend"] = backend
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["verifier"]["judge"].update(backend="http", url="http://127.0.0.1:8000")
    validate_config(cfg)
    assert set(default_config["pairs"]["kinds"]) == {"consistency", "penalty", "reflection"}


class ScriptedJudge(Judge):
    """Answers from a script and records how it was called (one call, all texts, the questions)."""
    name = "scripted"

    def __init__(self, verdicts):
        self.verdicts, self.calls = verdicts, []

    def judge(self, texts, questions=None, answer_types=None):
        self.calls.append((list(texts), list(questions), list(answer_types)))
        return [{"verdict": v, "judge": self.name, "raw": v.lower()} for v in self.verdicts]


def test_verify_all_asks_the_judge_once_with_questions_and_answer_types():
    rows = [dict(rollout("<think>It moves left so the answer is B.</think><answer>$B$</answer>"),
                 query={"answer": "B", "answer_type": "multiple_choice",
                        "question": "Where?\nA. left\nB. right" + MC_SUFFIX}),
            rollout("<think>so the answer is C.</think><answer>$C$</answer>")]
    judge = ScriptedJudge(["UNPARSABLE", "INCONSISTENT"])
    verdicts = verifier.verify_all(rows, WordTokenizer(), CFG, judge)
    assert len(judge.calls) == 1 and judge.calls[0][1] == ["Where?\nA. left\nB. right", ""]
    assert judge.calls[0][2] == ["multiple_choice", "multiple_choice"]  # the rule judge needs each type
    assert [v["checks"]["consistency"]["verdict"] for v in verdicts] == ["UNPARSABLE", "INCONSISTENT"]
    assert "judge: UNPARSABLE" in verdicts[0]["reasons"]  # unparsable is never consistent
    assert verifier.VerifierConfig.from_config(asdict(CFG)) == CFG


def known_verdict(query, label, verdict, clean=True, tokens=10, fmt=True, length=True, rep=True):
    return {"rollout_id": f"{query}#{tokens}", "query_id": query, "iteration": 1, "clean": clean, "reasons": [],
            "checks": {"length": {"ok": length, "think_tokens": tokens, "reasons": []}, "format": {"ok": fmt},
                       "repetition": {"ok": rep}, "accuracy": {"label": label, "score": 1.0},
                       "consistency": {"verdict": verdict, "judge": "rule"}}}


def test_verdict_statistics_on_a_known_verdict_file(tmp_path):
    from veripo.jsonio import read_jsonl, write_jsonl

    write_jsonl(tmp_path / "verdicts.jsonl", [
        known_verdict("a", "right", "CONSISTENT", tokens=20),
        known_verdict("a", "right", "INCONSISTENT", tokens=10),
        known_verdict("a", "wrong", "UNKNOWN", clean=False, tokens=2, length=False),
        known_verdict("b", "partial", "CONSISTENT", tokens=12),
        known_verdict("b", "wrong", "UNPARSABLE", clean=False, tokens=30, rep=False, fmt=False),
    ])
    stats = verdict_statistics(read_jsonl(tmp_path / "verdicts.jsonl"))
    assert stats["rollouts"] == 5 and stats["queries"] == 2 and stats["clean"] == 3
    assert stats["checks"] == {
        "length": {"ok": 4, "fail": 1}, "format": {"ok": 4, "fail": 1}, "repetition": {"ok": 4, "fail": 1},
        "accuracy": {"right": 2, "partial": 1, "wrong": 2},
        "consistency": {"CONSISTENT": 2, "INCONSISTENT": 1, "UNKNOWN": 1, "UNPARSABLE": 1}}
    assert stats["inconsistency_rate"] == 0.2 and stats["inconsistency_rate_decided"] == round(1 / 3, 4)
    assert stats["mean_think_tokens"] == {"all": 14.8, "chosen_candidates": 20.0, "others": 13.5}
    assert stats["judges"] == {"rule": 5}


def test_verify_all_gives_the_rule_judge_each_rollout_answer_type():
    think = "<think>I count them again and the answer is a total of 3.</think>"
    rows = [rollout(think + "<answer>$3$</answer>", answer="3", answer_type="numeric"),
            rollout(think + "<answer>$B$</answer>", answer="B", answer_type="multiple_choice")]
    verdicts = verifier.verify_all(rows, WordTokenizer(), CFG, verifier.get_judge({"backend": "rule"}))
    # numeric: 3 is the conclusion; multiple choice: the article "a" is no option A, so nothing is concluded
    assert [v["checks"]["consistency"]["verdict"] for v in verdicts] == ["CONSISTENT", "UNKNOWN"]
    assert verdicts[0]["checks"]["consistency"]["think_conclusion"] == "3"


def test_text_tokenizer_encodes_as_the_checkpoints_transformers_tokenizer(tiny_dir):
    """The verifier and the pair builder read tokenizer.json without transformers: the same ids as the
    checkpoint's AutoTokenizer, on the tags, the chat tokens, LaTeX, digits, spaces and non-ASCII text."""
    from transformers import AutoTokenizer

    from veripo.model.text_tokenizer import TextTokenizer, load_text_tokenizer

    ours, theirs = load_text_tokenizer(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    assert isinstance(ours, TextTokenizer)
    texts = ["<think> The square moves left, so the answer is B. </think><answer> $B$ </answer>",
             "<think>3 + 4 = 7\n\n  twice  spaced</think><answer>$\\frac{1}{2}$</answer><|im_end|>",
             "Wait, let me check again. éàü 日本 🙂", "", " leading space", "trailing space "]
    for text in texts:
        assert ours.encode(text, add_special_tokens=False) == theirs(text, add_special_tokens=False)["input_ids"], text
    assert ours.convert_tokens_to_ids("<|im_end|>") == theirs.convert_tokens_to_ids("<|im_end|>")
