"""What the SDK-based providers (openai, anthropic) share: a reply stream that opens the SDK's
streaming response on an exit stack, closes it exactly once, and re-raises the SDK's errors in the
app's terms (`raise ProviderError(code) from exc`)."""

from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import ModuleType
from typing import Any, ClassVar

import httpx2

from chat.providers.base import Delta, GenerationRequest, ProviderError, ReplyStream
from chat.providers.transport import error_for_status, error_for_transport


class SDKReplyStream(ReplyStream):
    """One streamed response of a vendor SDK; subclasses say how to open it and read text from it."""

    sdk: ClassVar[ModuleType]  # the SDK module: its APIStatusError, APITimeoutError, APIConnectionError
    sdk_error: ClassVar[type[Exception]]  # the root of the SDK's own errors
    undecodable: ClassVar[tuple[type[Exception], ...]] = ()  # parse errors of the stream's payloads

    def __init__(self, request: GenerationRequest) -> None:
        super().__init__(request)
        self._exit_stack = AsyncExitStack()
        self._closed = False
        self._complete = False  # the answer ended: failures while draining the body do not matter

    @abstractmethod
    def open(self) -> AbstractAsyncContextManager[Any]:
        """The SDK's streaming-response context manager; entering it sends the request."""

    @abstractmethod
    def texts(self, response: Any) -> AsyncIterator[str | Delta]:
        """The deltas of the opened response (a plain str is answer text); record finish reason and usage
        on `self.result`."""

    def status_error(self, exc: Any) -> ProviderError:
        """An HTTP error status of the SDK's APIStatusError, in the app's terms."""
        return error_for_status(exc.status_code, exc.response.headers)

    async def deltas(self) -> AsyncIterator[str | Delta]:
        try:
            response = await self._exit_stack.enter_async_context(self.open())
            if self._closed:  # closed by another task while connecting
                return
            async for text in self.texts(response):
                yield text
        except ProviderError:
            raise
        except httpx2.HTTPError as exc:
            # Raised unwrapped while reading the stream; after aclose() it is only our own doing.
            if not (self._complete or self._closed):
                raise error_for_transport(exc) from exc
        except Exception as exc:
            error = self._app_error(exc)
            if error is None:
                raise  # not the SDK's: a bug, re-raised as it is
            raise error from exc
        finally:
            await self.aclose()

    def _app_error(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, self.sdk.APIStatusError):
            return self.status_error(exc)
        if isinstance(exc, self.sdk.APITimeoutError):  # a kind of APIConnectionError: test it first
            return ProviderError("timeout")
        if isinstance(exc, self.sdk.APIConnectionError):
            return ProviderError("connection")
        if isinstance(exc, (self.sdk_error, *self.undecodable)):
            return ProviderError("upstream_error")
        return None

    async def aclose(self) -> None:
        self._closed = True
        await self._exit_stack.aclose()
