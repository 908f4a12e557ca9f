"""What every evaluation backend returns per question."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Generation:
    text: str  # decoded completion, special tokens removed
    num_tokens: int  # generated tokens, the EOS included
    truncated: bool  # hit max_new_tokens without EOS
