"""In a real headless Chromium: a key made on the API keys page is shown once, a call with it appears
live in the sidebar's API list and not in the chat's, and revoking it on the page refuses the next call."""

from typing import Any

import openai
import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import PageProblems, assert_page_healthy, wait_connected
from tests.fake_upstream import FakeUpstream, Scenario


def test_a_key_made_on_the_page_calls_in_the_api_list_and_revoking_it_refuses_the_next_call(
    context: Any, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    keys = problems.watch(context.new_page())
    keys.goto(f"{live_server_url}/")
    keys.get_by_role("link", name="API keys").click()
    keys.get_by_label("Name").fill("browser key")
    keys.get_by_role("button", name="Create key").click()
    secret = keys.locator("#new-key").input_value()
    assert secret.startswith("sc-")
    keys.goto(f"{live_server_url}/api-keys/")  # a reload would send the form again
    expect(keys.locator("#new-key")).to_have_count(0)
    expect(keys.locator("table.key-table")).to_contain_text(f"{secret[:10]}…")

    chats = problems.watch(context.new_page())
    chats.goto(f"{live_server_url}/")
    calls = problems.watch(context.new_page())
    calls.goto(f"{live_server_url}/?source=api")
    wait_connected(chats)
    wait_connected(calls)
    upstream.script(Scenario.text("Answered through the API."))
    # max_retries: should the chat's per-minute limit be reached by the browser tests before, the SDK
    # waits for its Retry-After.
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=secret, max_retries=3, timeout=60)
    answer = client.chat.completions.create(
        model="openai:gpt-test", messages=[{"role": "user", "content": "Asked by a script"}]
    )
    assert answer.choices[0].message.content == "Answered through the API."
    expect(calls.locator("#conversation-list")).to_contain_text("Asked by a script")
    expect(chats.locator("#conversation-list")).not_to_contain_text("Asked by a script")

    keys.get_by_role("button", name="Revoke “browser key”").click()
    expect(keys.locator("table.key-table")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    for page in (keys, chats, calls):
        assert_page_healthy(page, problems)
