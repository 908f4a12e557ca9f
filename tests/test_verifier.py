import pytest

from veripo import verifier

CFG = verifier.VerifierConfig(min_think_tokens=4, ngram=3, max_ngram_repeats=3, max_compression_ratio=3.0,
                              min_text_for_compression=200, numeric_right=0.9, numeric_wrong=0.3)


class WordTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


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


def test_unknown_judge_backend():
    with pytest.raises(ValueError, match="unknown judge backend"):
        verifier.get_judge({"backend": "oracle"})
