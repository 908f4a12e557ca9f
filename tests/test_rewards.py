from veripo.answers import score_response
from veripo.rewards import accuracy_reward, format_reward, is_well_formed

MC = {"answer": "B", "answer_type": "multiple_choice"}
NUM = {"answer": "2", "answer_type": "numeric"}
MATH = {"answer": "7", "answer_type": "math"}


def test_well_formed_response_gets_format_weight():
    assert format_reward("<think>It moves left. So the answer is B.</think><answer>$B$</answer>", 0.5) == 0.5
    assert format_reward("  <think>x</think>\n<answer>B</answer>\n", 0.5) == 0.5


def test_malformed_responses_get_no_format_reward():
    bad = [
        "<answer>B</answer>",  # no think
        "<think></think><answer>B</answer>",  # empty think
        "<answer>B</answer><think>x</think>",  # answer before think
        "<think>a</think><think>b</think><answer>B</answer>",  # two thinks
        "<think>a</think><answer>B</answer> trailing text",
        "<think>a</think><answer>B",  # unclosed
    ]
    for text in bad:
        assert not is_well_formed(text), text
        assert format_reward(text, 0.5) == 0.0


def test_accuracy_multiple_choice_is_strict():
    assert accuracy_reward("<think>x</think><answer>$B$</answer>", MC) == 1.0
    assert accuracy_reward("<think>x</think><answer>B. Clockwise</answer>", MC) == 0.0
    assert accuracy_reward("<think>x</think><answer>A</answer>", MC) == 0.0
    assert accuracy_reward("<think>the answer is B</think>", MC) == 0.0  # no <answer>


def test_accuracy_numeric_uses_mra():
    assert accuracy_reward("<think>x</think><answer>$2$</answer>", NUM) == 1.0
    assert abs(accuracy_reward("<think>x</think><answer>2.2</answer>", NUM) - 0.9) < 1e-9
    assert abs(accuracy_reward("<think>x</think><answer>3</answer>", NUM) - 0.1) < 1e-9
    assert accuracy_reward("<think>x</think><answer>two</answer>", NUM) == 0.0


def test_accuracy_math_reads_the_answer_not_the_think():
    leaky = "<think>x = 7, so 7 apples</think><answer>eight</answer>"
    assert score_response(leaky, "7", "math") == 1.0  # the published scorer finds the 7 in the think ...
    assert accuracy_reward(leaky, MATH) == 0.0  # ... the reward must not
    assert accuracy_reward("<think>so it is $7$</think><answer>$8$</answer>", MATH) == 0.0
    assert accuracy_reward("<think>so the answer is $7$</think>", MATH) == 0.0  # no <answer>
    assert accuracy_reward("<think>x</think><answer>$7$</answer>", MATH) == 1.0
    assert accuracy_reward("<think>x</think><answer>7</answer>", MATH) == 1.0


def test_accuracy_math_is_symbolic():
    half = {"answer": "0.5", "answer_type": "math"}
    assert accuracy_reward("<think>one of two</think><answer>$\\frac{1}{2}$</answer>", half) == 1.0
    assert accuracy_reward("<think>one of two</think><answer>\\frac{1}{2}</answer>", half) == 1.0
    assert accuracy_reward("<think>0.5</think><answer>$\\frac{1}{3}$</answer>", half) == 0.0


def test_accuracy_reads_the_answer_for_every_type():
    assert accuracy_reward("<think>the answer is B</think><answer>$A$</answer>", MC) == 0.0
    assert accuracy_reward("<think>it is 2</think><answer>$5$</answer>", NUM) == 0.0
