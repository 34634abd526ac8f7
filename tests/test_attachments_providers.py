"""Files on their way to the model: the prompt rule (chat.prompts) decides what goes as a file and what
as text, and each provider, through its real SDK against the fake upstream, sends them in its own format."""

import base64

import pytest

from chat.errors import ChatError
from chat.models import Attachment, Conversation, Message
from chat.prompts import FILE_TOKENS, build_request
from chat.providers import registry
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import ModelInfo
from chat.providers.local import LocalProvider
from chat.providers.openai import OpenAIProvider
from chat.services.attachments import attachments_check_model
from tests.attachment_files import pdf, png

API_KEY = "sk-test-planted-secret-0123456789"
IMAGE = png((8, 8))
PDF = pdf("The budget is 4 million.")
IMAGE_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()


def image(name: str = "chart.png") -> Attachment:
    return Attachment(kind="image", mime="image/png", name=name, storage_name=f"u1/{name}", size=len(IMAGE))


def document(text: str = "The budget is 4 million.") -> Attachment:
    return Attachment(kind="pdf", mime="application/pdf", name="budget.pdf", storage_name="u1/b.pdf", text=text)


def text_file(text: str = "alpha,beta\n1,2\n") -> Attachment:
    return Attachment(kind="text", mime="text/csv", name="table.csv", storage_name="u1/t.csv", text=text)


def read(attachment: Attachment) -> bytes:
    return PDF if attachment.kind == "pdf" else IMAGE


def request_for(model: ModelInfo, files: list[Attachment], *, earlier: list[Attachment] = ()):  # type: ignore[assignment]
    history = [
        Message(pk=1, role="user", content="Look at this first."),
        Message(pk=2, role="assistant", content="I see it."),
        Message(pk=3, role="user", content="What does it say?"),
    ]
    return build_request(
        conversation=Conversation(),
        history=history,
        model=model,
        max_output_tokens=256,
        attachments={1: list(earlier), 3: files},
        read=read,
    )


def model(provider: str, name: str, *, vision: bool = False, pdf: bool = False, context: int = 100_000) -> ModelInfo:
    return ModelInfo.of(provider, name, context_tokens=context, vision=vision, pdf=pdf)


@pytest.fixture
def openai_provider(upstream):
    return OpenAIProvider(
        name="openai",
        label="OpenAI",
        api_key=API_KEY,
        base_url=upstream.base_url_openai,
        model_names=["gpt-4o-mini", "gpt-4.1"],
        responses_models=["gpt-4.1"],
    )


@pytest.fixture
def anthropic_provider(upstream):
    return AnthropicProvider(api_key=API_KEY, base_url=upstream.base_url_anthropic, model_names=["claude-haiku-4-5"])


async def test_openai_chat_gets_an_image_as_an_image_url_data_part(openai_provider, upstream, read_reply):
    request = request_for(model("openai", "gpt-4o-mini", vision=True), [image()])

    await read_reply(openai_provider.stream(request))

    (sent,) = upstream.requests
    assert sent.body["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What does it say?"},
            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
        ],
    }


async def test_the_responses_api_gets_an_image_as_an_input_image(openai_provider, upstream, read_reply):
    request = request_for(model("openai", "gpt-4.1", vision=True), [image()])

    await read_reply(openai_provider.stream(request))

    (sent,) = upstream.requests
    assert sent.path.endswith("/responses")
    assert sent.body["input"][-1] == {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What does it say?"},
            {"type": "input_image", "image_url": IMAGE_URL},
        ],
    }


async def test_anthropic_gets_an_image_block_and_a_pdf_document_block_in_base64(
    anthropic_provider, upstream, read_reply
):
    request = request_for(model("anthropic", "claude-haiku-4-5", vision=True, pdf=True), [image(), document()])

    await read_reply(anthropic_provider.stream(request))

    (sent,) = upstream.requests
    assert sent.body["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(IMAGE).decode()},
            },
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
            },
            {"type": "text", "text": "What does it say?"},
        ],
    }


async def test_a_model_without_pdf_support_gets_the_pdf_text_between_markers(openai_provider, upstream, read_reply):
    request = request_for(model("openai", "gpt-4o-mini", vision=True), [document()])

    await read_reply(openai_provider.stream(request))

    (sent,) = upstream.requests
    assert sent.body["messages"][-1] == {
        "role": "user",
        "content": "What does it say?\n\n[Attached file: budget.pdf (PDF)]\nThe budget is 4 million.\n[End of budget.pdf]",
    }


async def test_an_openai_compatible_server_gets_images_as_openai_does(upstream, read_reply):
    server = OpenAIProvider(
        name="vllm", label="vLLM", api_key="x", base_url=upstream.base_url_openai, model_names=["qwen-vl"]
    )
    request = request_for(model("vllm", "qwen-vl", vision=True), [image()])

    await read_reply(server.stream(request))

    (sent,) = upstream.requests
    assert sent.body["messages"][-1]["content"][1] == {"type": "image_url", "image_url": {"url": IMAGE_URL}}


async def test_earlier_turns_send_their_files_again_along_the_path(anthropic_provider, upstream, read_reply):
    request = request_for(
        model("anthropic", "claude-haiku-4-5", vision=True, pdf=True), [], earlier=[image("first.png")]
    )

    await read_reply(anthropic_provider.stream(request))

    (sent,) = upstream.requests
    first = sent.body["messages"][0]
    assert first["content"][0]["type"] == "image" and first["content"][1] == {
        "type": "text",
        "text": "Look at this first.",
    }
    assert sent.body["messages"][-1] == {"role": "user", "content": "What does it say?"}


def test_text_files_go_as_text_to_every_model():
    request = request_for(model("local", "smollm2", context=4096), [text_file()])

    assert request.turns[-1].files == ()
    assert request.turns[-1].content.endswith(
        "[Attached file: table.csv (Text)]\nalpha,beta\n1,2\n\n[End of table.csv]"
    )


def test_a_model_that_does_not_see_images_gets_a_line_for_an_earlier_image():
    request = request_for(model("local", "smollm2", context=4096), [], earlier=[image("old.png")])

    assert request.turns[0].files == ()
    assert (
        request.turns[0].content == "Look at this first.\n\n[Attached image: old.png. This model does not see images.]"
    )


def test_a_long_pdf_text_is_trimmed_to_the_context_with_a_marker():
    small = model("openai", "gpt-small", context=2_000)
    request = request_for(small, [document("word " * 5_000)])

    sent = request.turns[-1].content
    assert "[Attached file: budget.pdf (PDF)]" in sent and sent.endswith("[End of budget.pdf]")
    assert "more characters of budget.pdf were left out to fit the model's context]" in sent
    assert len(sent) < 2_000 * 4
    assert [turn.content for turn in request.turns] == [sent], "older turns make room for the newest"


def test_an_image_costs_room_in_the_context():
    assert FILE_TOKENS > 0
    request = request_for(
        model("openai", "gpt-4o-mini", vision=True, context=2 * FILE_TOKENS), [image(), image("b.png")]
    )

    assert len(request.turns) == 1 and len(request.turns[0].files) == 2


@pytest.fixture
def local_offered(settings):
    settings.LOCAL_MODEL_ENABLED = True
    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_COMPATIBLE_SERVERS = []
    registry.reset()
    yield
    registry.reset()


def test_the_local_model_refuses_an_image_naming_itself(local_offered):
    with pytest.raises(ChatError) as refused:
        attachments_check_model(model_ref="local:smollm2-135m-instruct", attachments=[image()])

    assert refused.value.code == "unsupported_attachment"
    assert "SmolLM2 135M (local)" in refused.value.message and "chart.png" in refused.value.message


def test_the_registry_says_which_models_see_images(local_offered, settings, upstream):
    settings.ANTHROPIC_API_KEY = API_KEY
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    settings.OPENAI_COMPATIBLE_SERVERS = [
        {"name": "vllm", "base_url": upstream.base_url_openai, "api_key": "", "models": ["qwen-vl", "qwen"]}
    ]
    settings.CHAT_VISION_MODELS = ["vllm:qwen-vl"]
    registry.reset()

    seen = {m.ref: (m.vision, m.pdf) for m in registry.available_models()}

    assert seen == {
        "local:smollm2-135m-instruct": (False, False),
        "anthropic:claude-haiku-4-5": (True, True),
        "vllm:qwen-vl": (True, False),
        "vllm:qwen": (False, False),
    }


async def test_the_local_model_answers_a_text_file_given_as_text(read_reply):
    request = build_request(
        conversation=Conversation(),
        history=[Message(pk=1, role="user", content="Summarise.")],
        model=LocalProvider().models()[0],
        max_output_tokens=8,
        attachments={1: [text_file("The cat sat on the mat.")]},
        read=read,
    )

    assert request.turns[0].files == ()
    assert "The cat sat on the mat." in request.turns[0].content
    assert await read_reply(LocalProvider().stream(request))


def test_anthropic_merges_a_turn_with_files_into_blocks():
    from chat.providers.anthropic import alternating_turns
    from chat.providers.base import ChatTurn, TurnFile

    merged = alternating_turns(
        [ChatTurn("user", "First", files=(TurnFile("image", "image/png", "a.png", IMAGE),)), ChatTurn("user", "Second")]
    )

    (turn,) = merged
    assert [block["type"] for block in turn.blocks] == ["image", "text", "text"]
    assert turn.blocks[1:] == ({"type": "text", "text": "First"}, {"type": "text", "text": "Second"})
