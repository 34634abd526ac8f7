"""The worker asks CHAT_TITLE_MODEL for a title after a conversation's first reply (chat/services/titles.py
says when), in the background: the reply is already saved and announced, and a failure changes nothing."""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from chat import costs, events, services
from chat.models import Message
from chat.providers.base import ProviderError
from chat.services import titles

logger = logging.getLogger(__name__)

TITLE_TIMEOUT_SECONDS = 30
_running: set[asyncio.Task[None]] = set()


def title_in_background(reply: Message) -> None:
    """Start writing a title for the reply's conversation, if one is wanted."""
    if not settings.CHAT_TITLE_MODEL:
        return
    task = asyncio.get_running_loop().create_task(title_after_reply(reply))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def title_after_reply(reply: Message) -> None:
    wanted = await database_sync_to_async(titles.title_request_for)(reply=reply)
    if wanted is None:
        return
    provider, request = wanted
    stream = provider.stream(request)
    text: list[str] = []
    try:
        async with asyncio.timeout(TITLE_TIMEOUT_SECONDS), stream:
            async for delta in stream:
                if delta.kind == "text":
                    text.append(delta.text)
    except (ProviderError, TimeoutError) as error:
        logger.info(
            "conversation %s: no title from the model (%s)", reply.conversation_id, getattr(error, "code", error)
        )
        return
    result = stream.result
    # Counts not reported are estimated, as replies' are, at four characters a token.
    result.estimate_missing(request, output_chars=len("".join(text)), reasoning_chars=0)
    usage = costs.Usage.of(result)
    conversation = await database_sync_to_async(services.conversation_title_by_model)(
        conversation_id=reply.conversation_id,
        title="".join(text),
        tokens=(result.input_tokens or 0) + (result.output_tokens or 0),
        usage=usage,
    )
    if conversation is not None:
        await events.publish_to_user(conversation.owner_id, events.conversation_frame(conversation, running=False))
