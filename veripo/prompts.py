"""Turn a query record into the chat messages the policy sees, from the config's templates.

As in the authors' evaluation: the option template when the answer is a letter, else the number
template; the trailing "Answer with the option's letter..." sentence is removed; the video (or image)
comes before the text in the user turn; no system message beyond the model's default.
"""
from __future__ import annotations

# The benchmarks' multiple-choice instruction: the question files end their questions with it, our
# synthetic sets copy it, and every prompt drops it in favour of the option template.
MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


def strip_mc_suffix(question: str) -> str:
    return question.removesuffix(MC_SUFFIX)


def prompt_text(record: dict, templates: dict) -> str:
    key = "option" if record["answer_type"] == "multiple_choice" else "number"
    return templates[key].replace("{Question}", strip_mc_suffix(record["question"]))


def user_turn(text: str, video: bool, image: bool) -> list[dict]:
    """The chat messages of one prompt: the video, then the image, then the text."""
    content: list[dict] = [{"type": "video"}] if video else []
    if image:
        content.append({"type": "image"})
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def messages(record: dict, templates: dict) -> list[dict]:
    """A training query's messages: its video, else its image (a query carries one medium)."""
    video = bool(record.get("video"))
    return user_turn(prompt_text(record, templates), video, image=not video and bool(record.get("image")))
