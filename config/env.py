"""The one reader of environment variables: every setting the project takes comes through here."""

import os
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def _env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return cast(raw.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return int(_env_number(name, default, int))


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# A model with its own limits in tokens: MODEL@CONTEXT or MODEL@CONTEXT/MAX_OUTPUT.
_MODEL_WITH_LIMITS = re.compile(r"(?P<model>[^@]+)@(?P<context>\d+)(?:/(?P<max_output>\d+))?")


def env_models(name: str, default: str = "") -> dict[str, dict[str, int]]:
    """A comma list of models, each `MODEL`, `MODEL@CONTEXT` or `MODEL@CONTEXT/MAX_OUTPUT` (tokens), e.g.
    `llama3.1:8b@131072/8192,qwen`: by model name, in order, the limits given for it (ModelInfo fields)."""
    models: dict[str, dict[str, int]] = {}
    for entry in env_list(name, default):
        if "@" not in entry:
            models[entry] = {}
            continue
        match = _MODEL_WITH_LIMITS.fullmatch(entry)
        context = int(match["context"]) if match else 0
        # A reply gets at most half the context, so the prompt keeps the other half (chat/prompts.py).
        if not match or not 1 <= int(match["max_output"] or context // 2) <= context // 2:
            raise ImproperlyConfigured(
                f"{name}: {entry!r} must be MODEL, MODEL@CONTEXT or MODEL@CONTEXT/MAX_OUTPUT in tokens, with "
                "MAX_OUTPUT between 1 and half the CONTEXT (e.g. llama3.1:8b@131072/8192)"
            )
        limits = {"context_tokens": context}
        if match["max_output"]:
            limits["max_output_tokens"] = int(match["max_output"])
        models[match["model"].strip()] = limits
    return models


def env_decimal(name: str, default: str) -> Decimal:
    """An exact amount (money): `12.50`; never a float, so sums stay exact."""
    raw = env_str(name, default) or default
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name} must be a decimal number such as 12.50, got {raw!r}") from exc
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name} must be 0 or more, got {raw!r}")
    return value
