"""Every API call is a conversation (source `api`, the key's name); a client re-sending a growing
conversation continues the conversation it extends instead of copying it."""

import pytest
from django.test import Client

from chat.models import Conversation
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True)]


def ask(client, messages, model=TEST_MODEL, **fields):
    reply = client.chat.completions.create(model=model, messages=messages, **fields).choices[0].message.content
    return [*messages, {"role": "assistant", "content": reply}]


def stored(conversation):
    return [(m.role, m.content) for m in conversation.messages.order_by("id")]


@pytest.mark.cluster
def test_three_calls_of_a_growing_conversation_make_one_conversation_of_six_messages(sdk, make_key, upstream):
    upstream.script(Scenario.text("Answer one."), Scenario.text("Answer two."), Scenario.text("Answer three."))
    client = sdk(make_key(name="laptop"))
    messages = [{"role": "system", "content": "Be brief."}]
    for question in ("Question one?", "Question two?", "Question three?"):
        messages = ask(client, [*messages, {"role": "user", "content": question}])
    conversation = Conversation.objects.get()
    assert (conversation.source, conversation.api_key_name, conversation.system_prompt) == (
        "api",
        "laptop",
        "Be brief.",
    )
    assert conversation.title == "Question one?"
    assert stored(conversation) == [
        ("user", "Question one?"),
        ("assistant", "Answer one."),
        ("user", "Question two?"),
        ("assistant", "Answer two."),
        ("user", "Question three?"),
        ("assistant", "Answer three."),
    ]


def test_a_call_that_rewrites_the_history_starts_a_new_conversation(sdk, make_key, upstream):
    upstream.script(Scenario.text("First."), Scenario.text("Second."))
    client = sdk(make_key())
    messages = ask(client, [{"role": "user", "content": "Hi"}])
    messages[-1]["content"] = "An answer the client made up."
    ask(client, [*messages, {"role": "user", "content": "And?"}])
    first, second = Conversation.objects.order_by("id")
    assert stored(first) == [("user", "Hi"), ("assistant", "First.")]
    assert stored(second) == [
        ("user", "Hi"),
        ("assistant", "An answer the client made up."),
        ("user", "And?"),
        ("assistant", "Second."),
    ]


def test_a_different_system_prompt_or_key_starts_a_new_conversation(sdk, make_key, make_user, upstream):
    upstream.script(*(Scenario.text(f"Reply {n}.") for n in range(3)))
    user = make_user()
    client = sdk(make_key(user, name="one"))
    messages = ask(client, [{"role": "user", "content": "Hi"}])
    ask(client, [{"role": "system", "content": "Now terse."}, *messages, {"role": "user", "content": "More"}])
    ask(sdk(make_key(user, name="two")), [*messages, {"role": "user", "content": "More"}])
    assert Conversation.objects.count() == 3
    assert sorted(Conversation.objects.values_list("api_key_name", flat=True)) == ["one", "one", "two"]


def test_a_continued_conversation_takes_the_calls_model_and_parameters(sdk, make_key, upstream):
    upstream.script(Scenario.text("One."), Scenario.text("Two."))
    client = sdk(make_key())
    messages = ask(client, [{"role": "user", "content": "Hi"}], temperature=0.5)
    ask(client, [*messages, {"role": "user", "content": "Again"}], model="openai:gpt-other", top_p=0.5)
    conversation = Conversation.objects.get()
    assert (conversation.model, conversation.parameters) == ("openai:gpt-other", {"top_p": 0.5})
    assert conversation.messages.count() == 4


def test_the_user_sees_api_conversations_under_their_own_filter(sdk, make_key, make_user, upstream):
    upstream.script(Scenario.text("From the API."))
    user = make_user()
    ask(sdk(make_key(user)), [{"role": "user", "content": "Called through the API"}])
    browser = Client()
    browser.force_login(user)
    assert "Called through the API" not in browser.get("/").content.decode()
    api_list = browser.get("/?source=api").content.decode()
    assert "Called through the API" in api_list and 'data-source="api"' in api_list
    conversation = Conversation.objects.get()
    assert 'data-source="api"' in browser.get(f"/c/{conversation.pk}/").content.decode()
