"""Which providers this server offers, built once from settings: a provider without credentials is not offered."""

import logging
from dataclasses import replace
from functools import cache

from django.conf import settings

from chat.providers.base import ModelInfo, Provider

logger = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """The model reference names no configured provider or model."""


@cache
def providers() -> dict[str, Provider]:
    """Every configured provider by name, in the order the model picker lists them."""
    from chat.providers.anthropic import AnthropicProvider
    from chat.providers.local import LocalProvider
    from chat.providers.openai import OpenAIProvider

    found: list[Provider] = []
    if settings.LOCAL_MODEL_ENABLED:
        found.append(LocalProvider())
    if settings.OPENAI_API_KEY:
        found.append(
            OpenAIProvider(
                name="openai",
                label="OpenAI",
                api_key=settings.OPENAI_API_KEY,
                base_url=settings.OPENAI_BASE_URL or None,
                model_names=settings.OPENAI_MODELS,
                responses_models=settings.OPENAI_RESPONSES_MODELS,
                background_models=settings.OPENAI_BACKGROUND_MODELS,
            )
        )
    if settings.ANTHROPIC_API_KEY:
        found.append(
            AnthropicProvider(
                api_key=settings.ANTHROPIC_API_KEY,
                base_url=settings.ANTHROPIC_BASE_URL or None,
                model_names=settings.ANTHROPIC_MODELS,
                thinking_budget=settings.ANTHROPIC_THINKING_BUDGET,
                thinking_models=settings.ANTHROPIC_THINKING_MODELS,
                adaptive_models=settings.ANTHROPIC_THINKING_ADAPTIVE_MODELS,
            )
        )
    for server in settings.OPENAI_COMPATIBLE_SERVERS:
        if server["base_url"] and server["models"]:
            found.append(
                OpenAIProvider(
                    name=server["name"],
                    label=server["name"],
                    # Local servers usually need no key; the SDK insists on a non-empty one.
                    api_key=server["api_key"] or "not-needed",
                    base_url=server["base_url"],
                    model_names=server["models"],
                )
            )
    return {provider.name: provider for provider in found}


def models_of(provider: Provider) -> list[ModelInfo]:
    """The models `provider` offers, with the limits configured for them (MODEL@CONTEXT/MAX_OUTPUT in the
    settings' model lists), which win over what the provider assumes, and what each takes besides text
    (images, PDFs): declared by its provider, or named in CHAT_VISION_MODELS / CHAT_PDF_MODELS."""
    return [
        replace(
            model,
            vision=model.vision or model.ref in settings.CHAT_VISION_MODELS,
            pdf=model.pdf or model.ref in settings.CHAT_PDF_MODELS,
            **settings.MODEL_LIMITS.get(model.ref, {}),
        )
        for model in provider.models()
    ]


def available_models() -> list[ModelInfo]:
    return [model for provider in providers().values() for model in models_of(provider)]


def resolve(model_ref: str) -> tuple[Provider, ModelInfo]:
    """The provider and model for a 'provider:model' reference, or UnknownModel."""
    provider_name, _, _ = model_ref.partition(":")
    provider = providers().get(provider_name)
    if provider is not None:
        for model in models_of(provider):
            if model.ref == model_ref:
                return provider, model
    raise UnknownModel(model_ref)


async def cancel_response(model_ref: str, response_id: str) -> None:
    """Stop a response the model's provider keeps (background mode), best effort: it expires there anyway."""
    try:
        provider, _ = resolve(model_ref)
        await provider.cancel(response_id)
    except Exception as exc:  # noqa: BLE001 - never the SDK's text in the log: it can quote the API key
        logger.warning("could not cancel response %s upstream (%s)", response_id, type(exc).__name__)


def default_model_ref() -> str:
    """The configured default if it is offered, else the first model offered."""
    refs = [model.ref for model in available_models()]
    if settings.CHAT_DEFAULT_MODEL in refs:
        return settings.CHAT_DEFAULT_MODEL
    return refs[0] if refs else ""


async def close_clients() -> None:
    """Close the SDK clients (their aiohttp sessions and pooled connections) the running event loop opened:
    the worker does on its way out; any other loop's are closed as it shuts down (chat.providers.transport)."""
    from chat.providers.transport import close_clients

    await close_clients()


def reset() -> None:
    """Forget the providers built from settings (tests change settings)."""
    providers.cache_clear()
