"""English and Spanish: every user-facing string is in the catalog with a Spanish translation, the
browser's language picks the pages' language, and the user menu's switch overrides it.

The catalog check runs `makemessages` (chat's, which also knows the scripts' t()/tf()/tn()) on a copy
of the sources in a temporary folder, so a string wrapped but not translated fails here without the
test touching locale/. The template and script checks find strings that were never wrapped at all.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chat.models import Conversation

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = {"django": ["--ignore=static"], "djangojs": ["--ignore=static/vendor", "--ignore=templates"]}
SOURCES = ["manage.py", "config", "chat", "templates", "static/chat", "locale"]


@pytest.fixture(scope="module", autouse=True)
def compiled_catalog() -> None:
    """The .mo files the Spanish pages are read from, as scripts/bootstrap.sh compiles them."""
    command = [
        sys.executable,
        "manage.py",
        "compilemessages",
        "--ignore=.venv",
        "--ignore=bench",
        "--ignore=staticfiles",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def extracted_catalogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The catalogs `makemessages` makes today from the sources, merged with locale/es (as a translator gets them)."""
    folder = tmp_path_factory.mktemp("sources")
    for name in SOURCES:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
        else:
            shutil.copy(source, target)
    for domain, ignores in DOMAINS.items():
        command = [sys.executable, "manage.py", "makemessages", "-l", "es", "-d", domain, "--no-wrap", *ignores]
        subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=300)
    return {domain: (folder / f"locale/es/LC_MESSAGES/{domain}.po").read_text() for domain in DOMAINS}


def po_entries(text: str) -> list[dict[str, str | list[str] | bool]]:
    """The entries of a PO file (not its header, not obsolete ones): msgid, msgstr(s), whether fuzzy."""
    entries = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("#~")]
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        fields: dict[str, list[str]] = {}
        key = None
        for line in lines:
            match = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                key = match.group(1)
                fields[key] = [match.group(2)]
            elif line.startswith('"') and key:
                fields[key].append(line[1:-1])
        if "msgid" not in fields or not "".join(fields["msgid"]):
            continue
        strings = ["".join(value) for name, value in fields.items() if name.startswith("msgstr")]
        entries.append({"msgid": "".join(fields["msgid"]), "msgstrs": strings, "fuzzy": fuzzy})
    return entries


def untranslated(catalog: str) -> list[str]:
    return [entry["msgid"] for entry in po_entries(catalog) if entry["fuzzy"] or not all(entry["msgstrs"])]


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_wrapped_string_has_a_spanish_translation(extracted_catalogs, domain):
    assert len(po_entries(extracted_catalogs[domain])) > 50  # the extraction found the strings at all
    missing = untranslated(extracted_catalogs[domain])
    assert missing == [], f"not translated to Spanish in locale/es/LC_MESSAGES/{domain}.po: {missing}"


def test_the_catalog_check_catches_an_empty_a_fuzzy_and_a_half_plural_translation():
    catalog = (
        'msgid ""\nmsgstr "Language: es\\n"\n\n'
        'msgid "Empty"\nmsgstr ""\n\n'
        '#, fuzzy, python-format\n#| msgid "Old %(n)s"\nmsgid "Guessed %(n)s"\nmsgstr "Adivinado %(n)s"\n\n'
        'msgid "one"\nmsgid_plural "many"\nmsgstr[0] "uno"\nmsgstr[1] ""\n\n'
        'msgid "Done"\nmsgstr ""\n"Hecho"\n\n'
        '#~ msgid "Gone"\n#~ msgstr ""\n'
    )
    assert untranslated(catalog) == ["Empty", "Guessed %(n)s", "one"]


# --- Strings that were never wrapped ---------------------------------------------------------

# Text a person reads in a template: between tags, and in these attributes.
READ_ATTRIBUTES = ("aria-label", "placeholder", "title", "alt", "label")
UNREAD = re.compile(
    r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}|"
    r"{%\s*blocktranslate.*?{%\s*endblocktranslate\s*%}|{%.*?%}|{{.*?}}|"
    r"<script.*?</script>|<style.*?</style>|<svg.*?</svg>",
    re.S,
)


def _is_words(text: str) -> bool:
    """Letters a person reads: not an entity (&rsaquo;), not CSS class names (`share-page`)."""
    text = re.sub(r"&\w+;", "", text)
    return bool(re.search(r"[A-Za-z]", text)) and not re.fullmatch(r"(\s*[a-z0-9_]+(-[a-z0-9_]+)+)+\s*", text)


def unwrapped_template_text(source: str) -> list[str]:
    text = UNREAD.sub("", source)
    found = [m.group(1).strip() for m in re.finditer(r">([^<>]*)<", text) if _is_words(m.group(1))]
    for name in READ_ATTRIBUTES:
        found += [m.group(1) for m in re.finditer(rf'\s{name}="([^"]*)"', text) if _is_words(m.group(1))]
    return found


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.html")), ids=lambda path: path.name)
def test_no_template_shows_text_that_is_not_wrapped_for_translation(template):
    assert unwrapped_template_text(template.read_text()) == []


def test_the_template_check_finds_unwrapped_text():
    assert unwrapped_template_text('<p>Hello</p><button aria-label="Close">·</button>') == ["Hello", "Close"]
    assert unwrapped_template_text('<p>{% translate "Hello" %}</p><b title="{% translate \'Hi\' %}">·</b>') == []


# What a script shows a person: a text node, a label; a literal there must go through t() / tf() / tn().
SCRIPT_SHOWN = re.compile(
    r"""(?:textContent\s*=|setAttribute\(\s*"(?:aria-label|title|placeholder)",|\bbutton\(|announce\(|showError\(|"""
    r"""new Error\(|new Option\()\s*(["'`][^"'`]*[A-Za-z][^"'`]*["'`])"""
)


def unwrapped_script_literals(source: str) -> list[str]:
    found = []
    for match in SCRIPT_SHOWN.finditer(source):
        literal = re.sub(r"\$\{[^}]*\}", "", match.group(1))  # a template literal's own text
        if re.search(r"[A-Za-z]", literal) and not source.startswith(" in ", match.end(1)):  # `"key" in object`
            found.append(match.group(1))
    return found


@pytest.mark.parametrize("script", sorted((ROOT / "static" / "chat").glob("*.js")), ids=lambda path: path.name)
def test_no_script_shows_a_literal_that_is_not_wrapped_for_translation(script):
    assert unwrapped_script_literals(script.read_text()) == []


def test_the_script_check_finds_unwrapped_literals():
    assert unwrapped_script_literals('label.textContent = "Hello";') == ['"Hello"']
    assert unwrapped_script_literals("label.textContent = `Hi ${name}`;") == ["`Hi ${name}`"]
    assert unwrapped_script_literals('label.textContent = t("Hello");') == []
    assert unwrapped_script_literals("label.textContent = `${index}/${count}`;") == []


# --- Pages in the browser's language, and the switch ------------------------------------------


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user(username="alice", password="pw-alice-1234")


@pytest.mark.django_db
def test_a_spanish_browser_gets_the_login_page_in_spanish(client):
    response = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9,en;q=0.5")
    page = response.content.decode()
    assert '<html lang="es">' in page
    assert "Iniciar sesión" in page and "Nombre de usuario" in page


@pytest.mark.django_db
def test_an_english_browser_gets_english(client):
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="en">' in page and "Log in" in page


@pytest.mark.django_db
def test_a_browser_asking_for_neither_language_gets_english(client):
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()
    assert '<html lang="en">' in page


def test_the_chat_page_is_in_spanish_with_the_switch_in_the_user_menu(client, alice):
    client.force_login(alice)
    page = client.get(reverse("chat:home"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "Nuevo chat" in page and "Cerrar sesión" in page and "Enviar" in page
    assert f'action="{reverse("set_language")}"' in page
    assert '<option value="es" lang="es" selected>Español</option>' in page


def test_the_switch_sets_the_language_over_the_browsers(client, alice):
    client.force_login(alice)
    response = client.post(reverse("set_language"), {"language": "es", "next": "/"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get(reverse("chat:home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="es">' in page and "Nuevo chat" in page
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "New chat" in client.get(reverse("chat:home"), HTTP_ACCEPT_LANGUAGE="es").content.decode()


@pytest.mark.django_db
def test_the_scripts_catalog_is_a_same_origin_script_in_spanish(client):
    response = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    assert '"Connecting\\u2026": "Conectando\\u2026"' in body or '"Connecting…": "Conectando…"' in body
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_a_spanish_browser_gets_api_errors_in_spanish(client, alice):
    client.force_login(alice)
    response = client.get("/api/conversations/999999", HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No existe esa conversación."}


def test_the_admin_is_in_spanish_for_a_spanish_browser(client, db):
    staff = get_user_model().objects.create_superuser(username="root", password="pw-root-1234")
    Conversation.objects.create(owner=staff, title="Viaje", model="openai:gpt-test")
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_changelist"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "Conversaciones" in page  # the model's verbose name
    assert "Última actividad" in page  # a column
    assert "Resumen de uso" in page  # the object tool
    assert "Exportar las conversaciones seleccionadas como JSON" in page  # an action


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
async def test_a_spanish_browsers_socket_gets_its_error_frames_in_spanish(make_user):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tests.engine_fixtures import session_cookie_for

    user = await database_sync_to_async(make_user)()
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"accept-language", b"es-ES,es;q=0.9"),
        (b"cookie", await session_cookie_for(user)),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "hello"
    await communicator.send_json_to({"type": "subscribe", "conversation": 999_999})
    error = await communicator.receive_json_from(timeout=10)
    assert (error["code"], error["message"]) == ("not_found", "No existe esa conversación.")
    await communicator.disconnect()
