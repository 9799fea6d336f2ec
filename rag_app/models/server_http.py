"""What every client of a model server shares: its base URL, errors that name it, and retries with backoff."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "not-needed"  # local servers take any key; the openai client insists on one
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is not waited for in full
T = TypeVar("T")


class ServerError(RuntimeError):
    """A model server could not be used; the message names the URL tried and what to do."""

    def __init__(self, message: str, url: str, status: int | None = None, models: list[str] | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.models = models


def normalise_base_url(url: str) -> str:
    """The OpenAI base URL: a scheme, no trailing slash, and `/v1` added when the URL has no path at all."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        url = urlunsplit((parts.scheme, parts.netloc, "/v1", "", ""))
    return url


def server_root(base_url: str) -> str:
    """The server's root (vLLM's /tokenize, llama.cpp's /props, TEI's /info live there): the base URL less /v1."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def connect(base_url: str, api_key: str | None, timeout: float, connect_timeout: float,
            http_timeout: float) -> tuple[str, openai.OpenAI, httpx.Client]:
    """The normalised base URL, an OpenAI client for it (without its own retries: ours retry only until a
    request is accepted) and a plain HTTP client for the endpoints outside the OpenAI API (/models, /tokenize)."""
    url, key = normalise_base_url(base_url), api_key or DEFAULT_API_KEY
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0,
                           timeout=openai.Timeout(timeout, connect=connect_timeout))
    http = httpx.Client(timeout=httpx.Timeout(http_timeout, connect=connect_timeout),
                        headers={"Authorization": f"Bearer {key}"})
    return url, client, http


def status_of(error: BaseException) -> int | None:
    """The HTTP status an openai or httpx error carries, if any."""
    status = getattr(error, "status_code", None)
    if status is None and isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
    return status


def is_retryable(error: BaseException) -> bool:
    """Connection errors (not timeouts once connected), 429 and 502/503/504."""
    if isinstance(error, openai.APITimeoutError):
        return False
    if isinstance(error, openai.APIConnectionError | httpx.ConnectError | httpx.RemoteProtocolError):
        return True
    return status_of(error) in RETRY_STATUSES


def retry_delay(error: BaseException, attempt: int, backoff: float) -> float:
    """Exponential backoff with jitter (`backoff` × 2^attempt), or the server's Retry-After when longer."""
    delay = backoff * (2 ** attempt) * (1 + random.random() / 4)
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(delay, min(float(value), MAX_RETRY_AFTER)) if value is not None else delay
    except ValueError:  # an HTTP date: not worth parsing for a local server
        return delay


def with_backoff(call: Callable[[], T], attempts: int, backoff: float,
                 stop: Callable[[], bool] = lambda: False) -> T:
    """`call()`, retried up to `attempts` times while the error is retryable and `stop()` is False."""
    for attempt in range(attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt >= attempts or not is_retryable(error) or stop():
                raise
            delay = retry_delay(error, attempt, backoff)
            log.info("retrying after %s in %.2f s", type(error).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def error_detail(error: BaseException) -> str:
    """The server's own words for an error (the body's message), else the error's."""
    body: Any = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body.get("detail", body))
        return str(inner.get("message", inner) if isinstance(inner, dict) else inner)
    if body:
        return str(body)
    return str(getattr(error, "message", None) or error)


def unreachable(kind: str, url: str, error: BaseException, advice: str) -> ServerError:
    """The error for a server that does not answer at all."""
    cause = error.__cause__ or error
    return ServerError(f"could not reach the {kind} server at {url} ({type(cause).__name__}: {cause}). Is it "
                       f"running, and is the URL right (it should end in /v1)? {advice}", url)
