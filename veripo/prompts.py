"""Turn a query record into the chat messages the policy sees, from the config's templates.

As in the authors' evaluation: the option template when the answer is a letter, else the number
template; the trailing "Answer with the option's letter..." sentence is removed; the video (or image)
comes before the text in the user turn; no system message beyond the model's default.
"""
from __future__ import annotations

MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


def strip_mc_suffix(question: str) -> str:
    return question[: -len(MC_SUFFIX)] if question.endswith(MC_SUFFIX) else question


def prompt_text(record: dict, templates: dict) -> str:
    key = "option" if record["answer_type"] == "multiple_choice" else "number"
    return templates[key].replace("{Question}", strip_mc_suffix(record["question"]))


def messages(record: dict, templates: dict) -> list[dict]:
    content: list[dict] = []
    if record.get("video"):
        content.append({"type": "video"})
    elif record.get("image"):
        content.append({"type": "image"})
    content.append({"type": "text", "text": prompt_text(record, templates)})
    return [{"role": "user", "content": content}]
