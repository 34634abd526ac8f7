"""docs/api.md's examples work: its Python (the official openai SDK) and curl commands, run as written
against a real server with the fake upstream behind it."""

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True)]

DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
DOC_URL = "http://127.0.0.1:8000/v1"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def test_the_python_example_runs_as_written(v1_url, make_key, upstream):
    upstream.script(Scenario.text("Hello!"), Scenario.text("1, 2, 3, 4, 5."))
    [example] = blocks("python")
    code = example.replace(DOC_URL, v1_url).replace('api_key="sc-…"', f'api_key="{make_key()}"')
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "docs/api.md", "exec"), {})  # noqa: S102 - the document's own example
    printed = output.getvalue()
    assert "['openai:gpt-test', 'openai:gpt-other']" in printed
    assert "Hello! " in printed and "1, 2, 3, 4, 5." in printed and "tokens:" in printed


def test_the_curl_examples_run_as_written(v1_url, make_key, upstream):
    curl = shutil.which("curl")
    assert curl, "curl is needed to check docs/api.md"
    upstream.script(Scenario.text("Hello by curl."), Scenario.text("Streamed by curl."))
    [commands] = blocks("sh")
    answers = []
    for command in commands.strip().split("\n\n"):
        script = command.replace(DOC_URL, v1_url)
        run = subprocess.run(
            ["sh", "-c", script], env={"STREAMCHAT_KEY": make_key(), "PATH": "/usr/bin:/bin"}, capture_output=True
        )
        answers.append(run.stdout.decode())
    assert json.loads(answers[0])["choices"][0]["message"]["content"] == "Hello by curl."
    assert answers[1].rstrip().endswith("data: [DONE]") and "Streamed" in answers[1]
