"""The real app served over HTTP on a free port, queried with gradio_client."""

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

from tests.conftest import free_port
from tests.facts import FACT_QUESTION

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(fact_index):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--index", str(fact_index), "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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


def test_chat_endpoint_answers_with_sources(server):
    client = Client(server[0], verbose=False)
    messages, meter = client.predict(FACT_QUESTION, api_name="/chat")
    final = messages[-1]["content"] if isinstance(messages, list) else messages
    assert "fountain.txt" in final
    assert "Tuesday" in final
    assert "Context:" in meter


def test_listens_on_loopback_only(server):
    listening = [c for c in psutil.Process(server[1].pid).net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening, "the app must be listening"
    assert {connection.laddr.ip for connection in listening} == {"127.0.0.1"}
