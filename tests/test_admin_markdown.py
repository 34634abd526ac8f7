"""Admin transcripts show a reply as the chat does — Markdown, rendered and sanitised on the server —
with its raw text one click away; the model by a readable name; the last activity formatted."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chat.admin.markdown import markdown_html
from chat.models import Conversation, Message
from chat.providers import registry
from tests.xss_payloads import PAYLOADS, all_payloads

pytestmark = pytest.mark.django_db

User = get_user_model()
SAFE_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre"}
SAFE_TAGS |= {"blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"}


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.found


def test_markdown_renders_as_the_chat_shows_it():
    html = markdown_html(
        "# Plan\n\n**Bold**, `code` and ~~gone~~.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```py\nx = 1\n```"
    )
    assert "<h1>Plan</h1>" in html and "<strong>Bold</strong>" in html and "<code>code</code>" in html
    assert "<s>gone</s>" in html and "<td>1</td>" in html
    assert '<pre><code class="language-py">x = 1\n</code></pre>' in html


def test_a_web_link_stays_and_opens_without_the_opener():
    [(tag, attributes)] = [e for e in elements(markdown_html("[docs](https://example.com/a)")) if e[0] == "a"]
    assert attributes == {"href": "https://example.com/a", "rel": "noopener noreferrer nofollow"}


@pytest.mark.parametrize("name, payload", PAYLOADS, ids=[name for name, _ in PAYLOADS])
def test_no_hostile_payload_survives_the_renderer(name, payload):
    html = markdown_html(payload)
    for tag, attributes in elements(html):
        assert tag in SAFE_TAGS, (tag, html)
        assert not [attribute for attribute in attributes if attribute.startswith("on") or attribute == "style"]
        for attribute in ("href", "src"):
            value = (attributes.get(attribute) or "").strip().lower()
            assert not value or value.startswith(("http://", "https://", "mailto:")), html
    assert "<script" not in html.lower()  # as text, escaped, it is inert


def test_every_payload_at_once_renders_only_safe_markup():
    assert {tag for tag, _ in elements(markdown_html(all_payloads()))} <= SAFE_TAGS


# --- The transcript page and the Markdown export -----------------------------------------------


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    return client


@pytest.fixture
def conversation() -> Conversation:
    owner = User.objects.create_user("alice")
    return Conversation.objects.create(owner=owner, title="Plans", model="fake:echo-slow")


def reply(conversation: Conversation, content: str) -> Message:
    question = Message.objects.create(conversation=conversation, role="user", content="**not rendered**")
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content=content,
        provider="fake",
        model="fake:echo-slow",
    )


def transcript(client: Client, conversation: Conversation) -> str:
    return client.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()


def test_the_transcript_renders_a_reply_as_markdown_with_its_raw_text_behind_a_toggle(superuser_client, conversation):
    reply(conversation, "**Four**, and <script>window.__xss=1</script>")
    page = transcript(superuser_client, conversation)
    rendered = page[page.index('<div class="transcript-rendered">') :]
    assert rendered.index("<strong>Four</strong>") < rendered.index('<details class="transcript-raw">')
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in rendered and "<script>window" not in page
    raw = rendered[rendered.index('<details class="transcript-raw">') : rendered.index("</details>")]
    assert "<summary>Raw text</summary>" in raw and "**Four**" in raw
    assert "<strong>not rendered</strong>" not in page and "**not rendered**" in page  # a user's text is text


def test_the_transcript_and_export_name_the_model_readably(superuser_client, conversation, settings):
    settings.OPENAI_API_KEY, settings.OPENAI_MODELS = "sk-test", ["gpt-test"]
    registry.reset()
    try:
        offered = Conversation.objects.create(owner=conversation.owner, title="Offered", model="openai:gpt-test")
        Message.objects.create(
            conversation=offered, role="assistant", content="Hi", provider="openai", model="gpt-test"
        )
        assert '<span class="transcript-model" title="openai:gpt-test">gpt-test (OpenAI)</span>' in transcript(
            superuser_client, offered
        )
    finally:
        registry.reset()
    reply(conversation, "Four.")
    assert '<span class="transcript-model" title="fake:echo-slow">echo-slow (fake)</span>' in transcript(
        superuser_client, conversation
    )
    export = superuser_client.post(
        reverse("admin:chat_conversation_changelist"),
        {"action": "export_markdown", "_selected_action": [conversation.pk]},
    ).content.decode()
    assert (
        "Assistant · Complete · echo-slow (fake)" in export and "- Model: echo-slow (fake) · fake:echo-slow" in export
    )


def test_last_activity_is_formatted_in_the_readers_language(superuser_client, conversation):
    english = transcript(superuser_client, conversation)
    spanish = superuser_client.get(
        reverse("admin:chat_conversation_change", args=[conversation.pk]), HTTP_ACCEPT_LANGUAGE="es"
    ).content.decode()
    field = re.compile(r'field-last_activity.*?<div class="readonly">(.*?)</div>', re.S)
    [shown_en], [shown_es] = field.findall(english), field.findall(spanish)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", shown_en) and "+00:00" not in shown_en
    assert str(conversation.updated_at.year) in shown_en and shown_en != shown_es
    assert " de " in shown_es  # "2 de diciembre de 2026 a las 14:00"
