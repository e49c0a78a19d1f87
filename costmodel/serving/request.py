"""One request's progress through a server, in tokens.

A request of ``prompt_len`` P and ``output_len`` O knows P + generated tokens; the KV cache holds
``computed`` of them. Each forward pass processes known - computed tokens (all of them, or a chunk
of a long prefill); when it catches up (computed == known) the model emits the next token. So the
prefill (P new tokens, context 0) emits token 1, and each decode (1 new token, context P + i - 1)
emits token i + 1: O tokens take one prefill and O - 1 decodes, and the KV cache ends at P + O - 1.
A request preempted by recompute drops its cache (computed = 0) and later re-processes the P +
generated tokens it knows as one prefill (Kwon et al. 2023 §4.5).
"""

from __future__ import annotations

import math


class Request:
    """Token counts and timestamps of one request (seconds from the start of the run)."""

    __slots__ = ("rid", "arrival_s", "prompt_len", "output_len", "computed", "generated", "cap",
                 "first_scheduled_s", "first_token_s", "finish_s", "preemptions")

    def __init__(self, rid: int, arrival_s: float, prompt_len: int, output_len: int):
        self.rid = rid
        self.arrival_s = arrival_s
        self.prompt_len = prompt_len
        self.output_len = output_len
        self.computed = 0  # tokens whose K/V are in the cache
        self.generated = 0  # output tokens emitted so far
        self.cap = 0  # tokens the request's blocks can hold (blocks held x block size)
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.finish_s = math.nan
        self.preemptions = 0

    @property
    def known(self) -> int:
        """Prompt tokens plus those generated: what a recompute must re-process."""
        return self.prompt_len + self.generated

    @property
    def pending(self) -> int:
        """Tokens the next forward pass must process before the model can emit a token."""
        return self.prompt_len + self.generated - self.computed

    @property
    def in_decode(self) -> bool:
        return self.generated > 0 and self.prompt_len + self.generated - self.computed == 1

    @property
    def done(self) -> bool:
        return self.generated >= self.output_len

    def __repr__(self) -> str:
        return (f"Request({self.rid}, P={self.prompt_len}, O={self.output_len}, computed={self.computed}, "
                f"generated={self.generated})")


__all__ = ["Request"]
