"""Pages through Django's test client: accounts, login required, and each user sees only their own."""

import json

import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from chat.providers import registry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def models_configured(settings):
    """One fake OpenAI model and no local one, so the model picker has something to show."""
    settings.OPENAI_API_KEY = "sk-test-pages"
    settings.OPENAI_MODELS = ["gpt-test", "gpt-other"]
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_COMPATIBLE_SERVERS = []
    settings.LOCAL_MODEL_ENABLED = False
    settings.CHAT_DEFAULT_MODEL = "openai:gpt-other"
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-1234")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-1234")


def conversation_of(owner, title: str = "Trip plans", **fields) -> Conversation:
    return Conversation.objects.create(owner=owner, title=title, model="openai:gpt-test", **fields)


def page_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="page-data" type="application/json">') + len(
        '<script id="page-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


@pytest.mark.parametrize("name, args", [("chat:home", []), ("chat:conversation", [1]), ("password_change", [])])
def test_every_chat_page_requires_login(client, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_login_page_logs_in_and_goes_to_the_chat(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-1234"})
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.get(reverse("chat:home")).status_code == 200


def test_login_page_shows_an_error_for_a_wrong_password(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_logout_is_a_post_and_returns_to_the_login_page(client, user):
    client.force_login(user)
    response = client.post(reverse("logout"))
    assert response["Location"] == reverse("login")
    assert client.get(reverse("chat:home")).status_code == 302


def test_signup_creates_an_account_and_logs_it_in(client, settings, django_user_model):
    settings.CHAT_SIGNUP_ENABLED = True
    assert "Sign up" in client.get(reverse("login")).content.decode()
    response = client.post(
        reverse("signup"), {"username": "carol", "password1": "a-long-pass-42", "password2": "a-long-pass-42"}
    )
    assert response["Location"] == reverse("chat:home")
    assert django_user_model.objects.filter(username="carol").exists()
    assert client.get(reverse("chat:home")).status_code == 200


def test_signup_shows_form_errors_without_creating_an_account(client, settings, django_user_model):
    settings.CHAT_SIGNUP_ENABLED = True
    response = client.post(reverse("signup"), {"username": "carol", "password1": "a-long-pass-42", "password2": "x"})
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not django_user_model.objects.filter(username="carol").exists()


def test_signup_is_not_found_when_turned_off(client, settings, django_user_model):
    settings.CHAT_SIGNUP_ENABLED = False
    assert client.get(reverse("signup")).status_code == 404
    response = client.post(
        reverse("signup"), {"username": "eve", "password1": "a-long-pass-42", "password2": "a-long-pass-42"}
    )
    assert response.status_code == 404
    assert not django_user_model.objects.filter(username="eve").exists()
    assert "Sign up" not in client.get(reverse("login")).content.decode()


def test_password_change_changes_the_password(client, user):
    client.force_login(user)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": "pw-alice-1234", "new_password1": "another-pass-99", "new_password2": "another-pass-99"},
    )
    assert response["Location"] == reverse("password_change_done")
    assert client.get(reverse("password_change_done")).status_code == 200
    user.refresh_from_db()
    assert user.check_password("another-pass-99")


def test_home_lists_only_the_users_conversations_newest_first(client, user, other_user):
    older = conversation_of(user, "Older chat")
    newer = conversation_of(user, "Newer chat")
    Conversation.objects.filter(pk=older.pk).update(updated_at=newer.updated_at.replace(year=2000))
    conversation_of(other_user, "Bob's secret")
    client.force_login(user)
    html = client.get(reverse("chat:home")).content.decode()
    assert html.index("Newer chat") < html.index("Older chat")
    assert "Bob&#x27;s secret" not in html and "Bob's secret" not in html


def test_model_picker_offers_only_configured_models_with_the_default_selected(client, user):
    client.force_login(user)
    response = client.get(reverse("chat:home"))
    html = response.content.decode()
    assert '<option value="openai:gpt-test">' in html
    assert '<option value="openai:gpt-other" selected>' in html
    assert "local:" not in html and "anthropic:" not in html
    assert page_data(response)["default_model"] == "openai:gpt-other"


def test_conversation_page_carries_its_history_as_json_data(client, user):
    conversation = conversation_of(user, system_prompt="Be brief.")
    question = Message.objects.create(conversation=conversation, role="user", content="<script>alert(1)</script>")
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content="Sure.")
    client.force_login(user)
    response = client.get(reverse("chat:conversation", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html  # json_script escapes <, > and &
    data = page_data(response)
    assert [m["content"] for m in data["messages"]] == ["<script>alert(1)</script>", "Sure."]
    assert data["conversation"]["id"] == conversation.pk
    assert "Be brief." in html


def test_another_users_conversation_page_is_not_found(client, user, other_user):
    theirs = conversation_of(other_user, "Bob's secret")
    client.force_login(user)
    assert client.get(reverse("chat:conversation", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("chat:conversation", args=[999999])).status_code == 404


def test_chat_page_has_no_inline_script_or_style(client, user):
    client.force_login(user)
    response = client.get(reverse("chat:home"))
    html = response.content.decode()
    assert "style=" not in html and "<style" not in html and " onclick" not in html
    scripts = [part.split(">", 1)[0] for part in html.split("<script")[1:]]
    assert all(" src=" in tag or 'type="application/json"' in tag for tag in scripts), scripts
    assert "unsafe-inline" not in response["Content-Security-Policy"]
