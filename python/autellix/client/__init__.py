"""Clients for an Autellix server: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

A *program* groups the LLM calls of one agent run so the server schedules them together (PLAS /
ATLAS priorities come from the program's attained service, not the call's)::

    from autellix import Client

    client = Client("http://127.0.0.1:8000")
    with client.program() as p:                     # POST /v1/programs ... DELETE on exit
        plan = p.chat("Plan the steps.", max_tokens=64)
        step = p.chat([{"role": "user", "content": "Do step 1."}], parents=[plan.call_id])
        print(step.text, step.usage, p.info()["attained_service"])

The official ``openai`` SDK works unchanged but for the base URL and the program tag, sent as a
header on every call (or per call in the body)::

    import openai
    from autellix import Client

    with Client("http://127.0.0.1:8000").program() as p:
        oa = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused",
                           default_headers={"X-Autellix-Program": p.id})
        r = oa.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}])
        r.id                                  # the call id, usable as a parent of later calls
        oa.chat.completions.create(model="tiny", messages=[...],
                                   extra_body={"program_id": p.id, "thread_id": 1, "parent_ids": [r.id]})

Errors come back as :class:`APIError` subclasses carrying ``status``, the server's ``code`` and its
``message``; 429 and 503 answers are retried ``max_retries`` times (default 2) after the
server's ``Retry-After``.
"""

from autellix.client._common import CallResult, ChatResult, CompletionResult, RetryPolicy, Usage
from autellix.client.aio import AsyncCallStream, AsyncClient, AsyncProgram
from autellix.client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from autellix.client.sync import CallStream, Client, Program

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncCallStream",
    "AsyncClient",
    "AsyncProgram",
    "AuthenticationError",
    "BadRequestError",
    "CallResult",
    "CallStream",
    "ChatResult",
    "Client",
    "ClientError",
    "CompletionResult",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "Program",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "Usage",
]
