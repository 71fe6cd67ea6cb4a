"""The program layer over the official ``openai`` SDK: :class:`Client` (blocking) and
:class:`AsyncClient` (asyncio).

A *program* groups the LLM calls of one agent run so the server schedules them together (PLAS /
ATLAS priorities come from the program's attained service, not the call's). The clients start,
inspect and end programs, and hand out ``openai.OpenAI`` / ``openai.AsyncOpenAI`` clients that tag
every call with the program; everything else (chat, completions, responses, tools, streaming,
structured output) is the openai SDK's own::

    import autellix

    client = autellix.Client("http://127.0.0.1:8000")
    with client.program() as program:                       # POST /v1/programs ... DELETE on exit
        oa = program.openai                                 # X-Autellix-Program: <program.id>
        r = oa.chat.completions.create(model="smollm2-135m-instruct",
                                       messages=[{"role": "user", "content": "Plan the trip."}])
        # a later call naming its thread and the calls it depends on (ids or response objects)
        program.openai_for(thread=1, parents=[r]).chat.completions.create(...)
        program.info()                                      # GET /v1/programs/{id}

    program = client.program("run-42")    # an id of the caller's: no POST, the first call starts it
    ...
    program.end()                         # DELETE /v1/programs/run-42

Retries: the openai SDK's are off (``max_retries=0``), since it would resend a call that timed out
or lost its connection and so may have run. Only a 429 or 503 with ``Retry-After`` (the server
refused the call before starting it) is resent, ``refusal_retries`` times (default 2) after the
pause it asks for. Errors are the openai SDK's classes (``openai.BadRequestError``,
``openai.NotFoundError``, ``openai.RateLimitError``, ``openai.APIConnectionError``, ...).
"""

from autellix.client._base import DEFAULT_BASE_URL, parent_ids, tag_headers
from autellix.client.aio import AsyncClient, AsyncProgram
from autellix.client.sync import Client, Program

__all__ = ["DEFAULT_BASE_URL", "AsyncClient", "AsyncProgram", "Client", "Program", "parent_ids", "tag_headers"]
