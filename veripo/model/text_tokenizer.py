"""A checkpoint's tokenizer for text alone, loaded without transformers.

The verifier counts think tokens and the pair builder tokenises reflection completions: text only, in
jobs that otherwise need no model. transformers' AutoTokenizer imports torch and most of transformers
(about 5 s of a 10 s job on 2 cores); the ``tokenizers`` library reads the checkpoint's
``tokenizer.json``, which is what the fast tokenizer encodes with, in a fraction of that.
"""
from __future__ import annotations

import os


class TextTokenizer:
    """``encode`` and ``convert_tokens_to_ids`` as transformers' tokenizers name them, so either serves."""

    def __init__(self, path: str):
        from tokenizers import Tokenizer

        from veripo.errors import InputError
        from veripo.jsonio import require_regular_file

        require_regular_file(path)
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception ("EOF while parsing ...")
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(path, f"unreadable tokenizer: {reason}") from None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


def load_text_tokenizer(model_path: str):
    """The checkpoint's tokenizer.json through ``tokenizers``; transformers' AutoTokenizer when the
    checkpoint has none (a slow-only tokenizer, or a hub id)."""
    path = os.path.join(model_path, "tokenizer.json")
    if os.path.isfile(path):
        return TextTokenizer(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)
