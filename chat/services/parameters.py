"""A conversation's generation parameters: validated against its model's provider, stored on the
conversation, and narrowed to what a reply's model accepts when the reply starts.

The rules come from the provider (chat.providers.parameters): which parameters a model takes, their
ranges, and what may not be combined. A refusal is `invalid_parameter` naming the field, and nothing is
written. Switching a conversation's model keeps the values the new model accepts and drops the rest
(a temperature of 1.5 does not survive a switch to a model that takes at most 1).
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from chat import teams
from chat.errors import ChatError
from chat.prompts import reply_budget
from chat.providers import registry
from chat.providers.base import ModelInfo, Provider
from chat.providers.parameters import PARAMETER_NAMES, GenerationParameters, ParameterError, ParameterRule


def _invalid(field: str, message: str) -> ChatError:
    return ChatError("invalid_parameter", message, field=field)


def parameters_rules(*, provider: Provider, model: ModelInfo) -> dict[str, ParameterRule]:
    """What `model` accepts, its maximum output bounded by its reply budget."""
    budget = _budget(model)
    return {name: rule.bounded(budget) for name, rule in provider.parameter_rules(model).items()}


def _budget(model: ModelInfo) -> int:
    return reply_budget(model, settings.CHAT_MAX_OUTPUT_TOKENS)


def parameters_accepted(*, provider: Provider, model: ModelInfo, values: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values `model` accepts, silently without the others (a value stored for another model,
    or before the server's configuration changed): never refused, never sent where it would be."""
    rules = parameters_rules(provider=provider, model=model)
    accepted: dict[str, Any] = {}
    for name, value in values.items():
        if name in rules:
            try:
                accepted[name] = rules[name].checked(name, value)
            except ParameterError:
                continue
    # What may not be combined: drop the field the provider names, until it accepts the rest.
    for _ in range(len(accepted)):
        try:
            provider.check_parameters(model, accepted, reply_budget=_budget(model))
            break
        except ParameterError as error:
            accepted.pop(error.field, None)
    return accepted


def parameters_validate(*, model_ref: str, given: object, current: Mapping[str, Any]) -> dict[str, Any]:
    """The conversation's parameters after applying `given` (a JSON object: a value sets a parameter,
    null clears it) to `current`, for the model `model_ref`; `invalid_parameter` naming the field else."""
    if not isinstance(given, dict):
        raise _invalid("parameters", '`parameters` must be an object such as {"temperature": 0.7}.')
    try:
        provider, model = registry.resolve(model_ref)
    except registry.UnknownModel:
        raise ChatError(
            "unknown_model", "This conversation's model is no longer offered: choose another first."
        ) from None
    rules = parameters_rules(provider=provider, model=model)
    values = parameters_accepted(provider=provider, model=model, values=current)
    for name, value in given.items():
        if name not in PARAMETER_NAMES:
            known = ", ".join(PARAMETER_NAMES)
            raise _invalid(name, f"`{name}` is not a generation parameter; the parameters are {known}.")
        if value is None:
            values.pop(name, None)
        elif name not in rules:
            raise _invalid(name, f"`{name}` is not accepted by {model.ref}.")
        else:
            try:
                values[name] = rules[name].checked(name, value)
            except ParameterError as error:
                raise _invalid(error.field, error.message) from None
    try:
        provider.check_parameters(model, values, reply_budget=_budget(model))
    except ParameterError as error:
        raise _invalid(error.field, error.message) from None
    return values


def parameters_for_request(
    *, provider: Provider, model: ModelInfo, values: Mapping[str, Any]
) -> tuple[GenerationParameters, int | None]:
    """The request parameters of a reply on `model`, and the conversation's maximum output (None: the
    model's reply budget)."""
    accepted = parameters_accepted(provider=provider, model=model, values=values)
    return GenerationParameters.of(accepted), accepted.get("max_output_tokens")


def parameters_by_model(*, user_id: int | None = None) -> list[tuple[ModelInfo, dict[str, ParameterRule]]]:
    """Every model offered (to a user: those their groups allow), with the parameters it accepts (the
    chat's settings, `GET /api/models`)."""
    allowed = teams.limits_for(user_id=user_id) if user_id is not None else None
    return [
        (model, parameters_rules(provider=provider, model=model))
        for provider in registry.providers().values()
        for model in registry.models_of(provider)
        if allowed is None or allowed.allows(model.ref)
    ]
