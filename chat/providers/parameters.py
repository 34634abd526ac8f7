"""Generation parameters a conversation may set (temperature, top_p, maximum output, stop sequences,
reasoning effort, thinking budget, repetition penalty), and the rules each provider states for them.

A provider says which parameters a model accepts and in what range (`Provider.parameter_rules`), and
checks what depends on several of them at once (`Provider.check_parameters`); chat.services validates
a conversation's values against both and stores them; chat.prompts turns the stored values into the
`GenerationParameters` of a request, keeping only what the reply's model accepts.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

PARAMETER_NAMES = (
    "temperature",
    "top_p",
    "max_output_tokens",
    "stop",
    "reasoning_effort",
    "thinking_budget",
    "repetition_penalty",
)


class ParameterError(ValueError):
    """A parameter value the model does not accept: `field` names it, `message` says what would do."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class ParameterRule:
    """What one parameter may be for one model.

    `kind`: "number" (a JSON number), "integer", "choice" (one of `choices`) or "strings" (a list of at
    most `max_items` non-empty strings of at most `max_chars` characters). Numbers lie in
    [`minimum`, `maximum`]; an integer `maximum` of None is the model's reply budget (filled in by
    `ParameterRule.bounded`). `allow_zero`: 0 is accepted besides the range (a thinking budget of 0
    switches thinking off). `default` is what applies when the conversation sets nothing (shown in the UI).
    """

    kind: Literal["number", "integer", "choice", "strings"]
    label: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_items: int = 0
    max_chars: int = 0
    allow_zero: bool = False
    default: Any = None
    help: str = ""

    def bounded(self, reply_budget: int) -> "ParameterRule":
        """The rule with an open integer maximum set to the model's reply budget."""
        if self.kind == "integer" and self.maximum is None:
            return ParameterRule(**{**self.__dict__, "maximum": reply_budget})
        return self

    def checked(self, name: str, value: object) -> Any:
        """The value as stored, or ParameterError saying what this model accepts."""
        if self.kind in ("number", "integer"):
            return self._checked_number(name, value)
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ParameterError(name, f"`{name}` must be one of {', '.join(self.choices)}.")
            return value
        return self._checked_strings(name, value)

    def _checked_number(self, name: str, value: object) -> float | int:
        integer = self.kind == "integer"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParameterError(name, f"`{name}` must be {'an integer' if integer else 'a number'}.")
        if integer and value != int(value):
            raise ParameterError(name, f"`{name}` must be a whole number.")
        number = int(value) if integer else float(value)
        if self.allow_zero and number == 0:
            return number
        if not self.minimum <= number <= self.maximum:
            accepted = f"from {self.minimum:g} to {self.maximum:g}"
            raise ParameterError(name, f"`{name}` must be {accepted}{' (or 0: off)' if self.allow_zero else ''}.")
        return number

    def _checked_strings(self, name: str, value: object) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise ParameterError(name, f"`{name}` must be a list of non-empty strings.")
        if len(value) > self.max_items:
            raise ParameterError(name, f"`{name}` takes at most {self.max_items} sequences for this model.")
        if any(len(item) > self.max_chars or "\x00" in item for item in value):
            raise ParameterError(name, f"Each of `{name}` must be at most {self.max_chars} characters, without NUL.")
        return list(value)


ParameterRules = Mapping[str, ParameterRule]

# The rules most providers share; each provider picks and adjusts them for a model.
TEMPERATURE = ParameterRule("number", "Temperature", 0.0, 2.0, help="Higher is more varied, lower more focused.")
TOP_P = ParameterRule("number", "Top p", 0.0, 1.0, help="Sample only from the most likely tokens that add up to p.")
MAX_OUTPUT_TOKENS = ParameterRule("integer", "Maximum output tokens", 1, None, help="The longest a reply may be.")
STOP = ParameterRule("strings", "Stop sequences", max_items=4, max_chars=200, help="One per line.")
REASONING_EFFORT = ParameterRule(
    "choice", "Reasoning effort", help="How much the model reasons before it answers (the provider's default if unset)."
)


@dataclass(frozen=True)
class GenerationParameters:
    """The parameters of one request: None (or empty) where the conversation set nothing, so the
    provider's own default applies. `max_output_tokens` is applied by chat.prompts to the reply budget."""

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    repetition_penalty: float | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> "GenerationParameters":
        """From a conversation's stored values (already filtered to what the model accepts)."""
        return cls(
            temperature=values.get("temperature"),
            top_p=values.get("top_p"),
            stop=tuple(values.get("stop") or ()),
            reasoning_effort=values.get("reasoning_effort"),
            thinking_budget=values.get("thinking_budget"),
            repetition_penalty=values.get("repetition_penalty"),
        )

    def sampling(self) -> dict[str, Any]:
        """temperature, top_p and the stop sequences as most APIs name them, only those set."""
        given = {"temperature": self.temperature, "top_p": self.top_p}
        sampling = {name: value for name, value in given.items() if value is not None}
        if self.stop:
            sampling["stop"] = list(self.stop)
        return sampling
