"""The real launcher (app.py) served over HTTP on a free port: login, loopback binding, the /chat endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import Client

from rag_app.ui.render import escape
from tests.facts import FACT_QUESTION
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
LOGIN = ("reader", "s3cret-pw")


@pytest.fixture(scope="module")
def server(fact_index):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--index", str(fact_index), "--port", str(port),
         "--max-new-tokens", "12", "--max-upload-mb", "1"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_APP_AUTH": ":".join(LOGIN)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app exited early:\n{process.stdout.read()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("app did not start within 180 s")
    yield url, process
    process.terminate()
    process.wait(timeout=30)


def test_chat_endpoint_answers_with_sources_after_login(server):
    client = Client(server[0], auth=LOGIN, verbose=False)
    messages, meter, details = client.predict(FACT_QUESTION, api_name="/chat")
    assert "fountain.txt" in messages[-1]["content"]
    assert messages[-1]["metadata"]["title"].startswith("📚 Sources")
    assert details["sources"][0]["file"].endswith("fountain.txt")
    assert "Context:" in meter


def test_a_refusal_over_http_shows_the_closest_passages(server):
    client = Client(server[0], auth=LOGIN, verbose=False)
    messages, meter, details = client.predict("Who wrote Moby-Dick?", api_name="/chat")
    assert details["abstained"] and details["sources"] == [] and details["closest"]
    assert messages[-1]["metadata"]["title"] == f"📚 Sources (none · {len(details['closest'])} closest)"
    assert all(hit["relevance"] < 0.5 and escape(hit["location"]) in messages[-1]["content"]
               for hit in details["closest"])


def test_without_login_the_api_is_refused(server):
    with pytest.raises(Exception, match="(?i)login|auth|401|403"):
        Client(server[0], verbose=False).predict(FACT_QUESTION, api_name="/chat")
    assert httpx.post(server[0] + "login", data={"username": LOGIN[0], "password": "wrong"}).status_code >= 400


def test_bad_login_setting_is_a_clear_error():
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--auth", "nopassword"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "RAG_APP_AUTH": ""})
    assert result.returncode != 0 and "not in the form user:password" in result.stderr


def test_listens_on_loopback_only(server):
    listening = [c for c in psutil.Process(server[1].pid).net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening, "the app must be listening"
    assert {connection.laddr.ip for connection in listening} == {"127.0.0.1"}
