"""The prompt the worker builds from the database, and the rule that trims it to the model's context."""

from chat.models import Conversation, Message
from chat.prompts import build_request
from chat.providers.base import ChatTurn, ModelInfo

SMALL_MODEL = ModelInfo(ref="x:small", provider="x", name="small", label="small", context_tokens=200)


def history(*pairs: tuple[str, str]) -> list[Message]:
    return [Message(role=role, content=content) for role, content in pairs]


def test_the_system_prompt_and_history_are_sent_in_order():
    conversation = Conversation(system_prompt="Be brief.")
    request = build_request(
        conversation=conversation,
        history=history(("user", "Hi"), ("assistant", "Hello!"), ("user", "How are you?")),
        model=SMALL_MODEL,
        max_output_tokens=50,
    )
    assert request.system == "Be brief."
    assert request.turns == [ChatTurn("user", "Hi"), ChatTurn("assistant", "Hello!"), ChatTurn("user", "How are you?")]
    assert request.model == "small" and request.max_output_tokens == 50


def test_the_oldest_messages_are_dropped_first_when_the_context_is_full():
    old = ("user", "x" * 400)  # about 100 tokens: cannot fit beside the newer ones
    request = build_request(
        conversation=Conversation(),
        history=history(old, ("assistant", "y" * 80), ("user", "z" * 80)),
        model=SMALL_MODEL,
        max_output_tokens=100,
    )
    assert [turn.content[0] for turn in request.turns] == ["y", "z"]


def test_the_newest_message_is_always_sent_even_when_it_alone_is_too_long():
    request = build_request(
        conversation=Conversation(), history=history(("user", "w" * 5000)), model=SMALL_MODEL, max_output_tokens=50
    )
    assert len(request.turns) == 1


def test_a_reply_that_failed_before_any_text_is_not_sent_but_a_stopped_one_keeps_its_text():
    request = build_request(
        conversation=Conversation(),
        history=history(("user", "a"), ("assistant", ""), ("user", "b"), ("assistant", "partial"), ("user", "c")),
        model=SMALL_MODEL,
        max_output_tokens=50,
    )
    assert [turn.content for turn in request.turns] == ["a", "b", "partial", "c"]


def test_the_reply_budget_is_at_most_half_a_small_models_context():
    request = build_request(
        conversation=Conversation(), history=history(("user", "a")), model=SMALL_MODEL, max_output_tokens=4096
    )
    assert request.max_output_tokens == 100


def test_a_reply_with_signed_thinking_is_sent_back_as_its_blocks_in_order_and_others_as_text():
    signed = Message(
        role="assistant",
        content="Four.",
        parts=[
            {"kind": "reasoning", "text": "Two and two.", "signature": "sig-1", "duration_ms": 900},
            {"kind": "reasoning", "text": "", "redacted": "opaque=="},
            {"kind": "text", "text": "Four.", "duration_ms": 100},
        ],
    )
    unsigned = Message(
        role="assistant",
        content="Five.",
        parts=[{"kind": "reasoning", "text": "Hm"}, {"kind": "text", "text": "Five."}],
    )
    request = build_request(
        conversation=Conversation(),
        history=[
            Message(role="user", content="a"),
            signed,
            Message(role="user", content="b"),
            unsigned,
            Message(role="user", content="c"),
        ],
        model=SMALL_MODEL,
        max_output_tokens=50,
    )

    assert request.turns[1] == ChatTurn(
        "assistant",
        "Four.",
        (
            {"type": "thinking", "thinking": "Two and two.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "text", "text": "Four."},
        ),
    )
    assert request.turns[3] == ChatTurn("assistant", "Five."), "reasoning without a signature cannot go back"
