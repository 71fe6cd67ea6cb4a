"""Program life cycle: POST /v1/programs, GET and DELETE /v1/programs/{id}."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from autellix.server.calls import not_found_program
from autellix.server.programs import Program
from autellix.server.bodies import parse_program_create, read_json
from autellix.server.errors import ApiError
from autellix.server.state import CALLS, DRIVER, owner_of

log = logging.getLogger("autellix.server")

SNAPSHOT_TIMEOUT = 10.0


async def create_program(request: web.Request) -> web.Response:
    # The body is optional: no body (or an empty one) is a program without metadata.
    body: dict[str, Any] = await read_json(request) if (await request.read()).strip() else {}
    program_id, metadata = parse_program_create(body)
    calls = request.app[CALLS]
    calls.check_ready()
    owner = owner_of(request)
    if program_id is not None and calls.programs.get(program_id, owner) is not None:
        raise ApiError(409, f"program {program_id!r} exists already", param="id", code="program_exists")
    program = calls.start_program(owner, program_id, metadata=metadata)
    return web.json_response(
        {"id": program.id, "object": "program", "created": program.created, "metadata": program.metadata},
        status=201,
    )


def _find(request: web.Request) -> Program:
    program_id = request.match_info["program_id"]
    program = request.app[CALLS].programs.get(program_id, owner_of(request))
    if program is None or program.solo:
        raise not_found_program(program_id)
    return program


async def get_program(request: web.Request) -> web.Response:
    program = _find(request)
    driver = request.app[DRIVER]
    attained = critical = waiting = 0.0
    # The client's count of calls still to come, as the engine its calls are pinned to sees it
    # (each engine counts the calls it gets), else as any engine that heard one.
    pinned = driver.balancer.pinned(program.internal_id)
    calls_to_come = None
    try:
        snapshots = await asyncio.wait_for(driver.snapshots([program.internal_id]), SNAPSHOT_TIMEOUT)
    except Exception:  # an engine died or is stuck: show what the front end knows
        log.warning("scheduler snapshot for %s failed", program.id, exc_info=True)
        snapshots = []
    for engine, snapshot in enumerate(snapshots):
        if not snapshot:
            continue
        programs = snapshot.get("programs") or {}
        info = programs.get(program.internal_id) or programs.get(str(program.internal_id))
        if info:
            attained += float(info.get("attained_service", 0.0))
            critical = max(critical, float(info.get("critical_path", 0.0)))
            waiting += float(info.get("waiting_time", 0.0))
            if info.get("calls_to_come") is not None and (calls_to_come is None or engine == pinned):
                calls_to_come = info["calls_to_come"]
    return web.json_response(
        {
            "id": program.id,
            "object": "program",
            "state": "active",
            "created": program.created,
            "metadata": program.metadata,
            "calls": [record.to_json() for record in program.calls.values()],
            "attained_service": attained,
            "critical_path": critical,
            "waiting_time": waiting,
            "active_calls": len(program.active),
            "calls_to_come": calls_to_come,
            "engine": pinned,
        }
    )


async def delete_program(request: web.Request) -> web.Response:
    program = _find(request)
    # Shielded: a client that hangs up mid-delete must not leave the program half ended.
    aborted = await asyncio.shield(request.app[CALLS].end_program(program))
    return web.json_response({"id": program.id, "object": "program.deleted", "deleted": True, "aborted_calls": aborted})
