"""Reasoning written inline: models such as Qwen3 and the DeepSeek-R1 distills, served by llama.cpp,
open their answer with `<think>…</think>` in the content itself. This splits it off as reasoning."""

from typing import Literal

from chat.providers.base import Delta, PartKind

OPEN, CLOSE = "<think>", "</think>"


class ThinkTagSplitter:
    """Fed an answer's content chunk by chunk, returns it as Deltas: the `<think>` block that opens the
    answer as reasoning, the rest as text. `flush()` once the content ended.

    Only a `<think>` at the start (after optional whitespace) counts: one later on is the answer's own
    text (a code sample, say). Text is held back only while it could still be the start of a tag.
    Whitespace that opens the block, and that follows it before the answer, is dropped: an empty block
    (`<think>\\n\\n</think>\\n\\n`, a thinking model told not to think) leaves no trace.
    """

    def __init__(self) -> None:
        self._state: Literal["start", "reasoning", "text"] = "start"
        self._held = ""
        self._skip_space = False  # just inside or just after the block: whitespace there is dropped

    def feed(self, chunk: str) -> list[Delta]:
        self._held += chunk
        if self._state == "start":
            self._open()
        deltas = []
        if self._state == "reasoning":
            deltas += self._release("reasoning")
        if self._state == "text":
            deltas += self._release("text")
        return deltas

    def flush(self) -> list[Delta]:
        """What is still held back: an unfinished tag is content, and reasoning left open stays reasoning."""
        held, self._held = self._held, ""
        return [Delta(held, "reasoning" if self._state == "reasoning" else "text")] if held else []

    def _open(self) -> None:
        """Decide, once the answer's first characters are in, whether it opens with a `<think>` block."""
        opening = self._held.lstrip()
        if opening.startswith(OPEN):
            self._held = opening[len(OPEN) :]
            self._state, self._skip_space = "reasoning", True
        elif not OPEN.startswith(opening):  # else whitespace, or what may become the tag: wait for more
            self._state = "text"

    def _release(self, kind: PartKind) -> list[Delta]:
        """The held text this part can let go of: in reasoning, up to the closing tag or what may become it."""
        if self._skip_space:
            self._held = self._held.lstrip()
            self._skip_space = not self._held
        held, rest = self._held, ""
        if kind == "reasoning":
            if (end := held.find(CLOSE)) >= 0:
                held, rest = held[:end], held[end + len(CLOSE) :]
                self._state, self._skip_space = "text", True
            elif keep := _tag_start_at_end(held, CLOSE):
                held, rest = held[:-keep], held[-keep:]
        self._held = rest
        return [Delta(held, kind)] if held else []


def _tag_start_at_end(text: str, tag: str) -> int:
    """How many characters at the end of `text` a later chunk could still complete into `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0
