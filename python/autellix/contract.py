"""The one typed contract for what crosses Autellix's layers: HTTP headers and body fields the
front end reads, the `SamplingParams.extra_args` keys the engine plug-in reads, program id ranges,
and policy names. Server, engine driver, plug-in, client and benches import these; none of them
spells one of these strings itself.

Program identity, in the order the front end looks (the first one given wins):
  1. the `X-Autellix-Program` header (or the body field `program_id`, or
     `vllm_xargs.autellix_program_id`);
  2. vLLM's session id: the `X-Session-ID` header, the body field `session_id`,
     `vllm_xargs.session_id`;
  3. vLLM Router's `vllm_xargs.agentic_context.program_id`.
"""

from __future__ import annotations

from typing import Final, Literal

# -- HTTP ---------------------------------------------------------------------------------------
PROGRAM_HEADER: Final = "X-Autellix-Program"
THREAD_HEADER: Final = "X-Autellix-Thread"
PARENTS_HEADER: Final = "X-Autellix-Parents"  # comma-separated call ids
# The calls the program will still make, this one included (an agent's step budget less the steps
# it has taken; an upper bound will do): plas and atlas then rank it by the work that leaves.
CALLS_LEFT_HEADER: Final = "X-Autellix-Calls-Left"
CALL_HEADER: Final = "X-Autellix-Call-Id"  # on every generation response
SESSION_HEADER: Final = "X-Session-ID"  # vLLM's own (vllm.entrypoints.generate.base.serving)
REQUEST_ID_HEADER: Final = "X-Request-Id"  # vLLM's: names the engine request (and the response)

# Body fields of Autellix's own (vLLM ignores them; the front end removes them before vLLM sees
# the body).
PROGRAM_FIELD: Final = "program_id"
THREAD_FIELD: Final = "thread_id"
PARENTS_FIELD: Final = "parent_ids"
CALLS_LEFT_FIELD: Final = "calls_left"
# vLLM's fields.
SESSION_FIELD: Final = "session_id"
XARGS_FIELD: Final = "vllm_xargs"
# vLLM Router's agentic context inside vllm_xargs: {"agentic_context": {"program_id": ...}}
AGENTIC_CONTEXT: Final = "agentic_context"

# -- SamplingParams.extra_args (vllm_xargs over vLLM's HTTP) -------------------------------------
PROGRAM_KEY: Final = "autellix_program_id"  # int in CLIENT_PROGRAMS
THREAD_KEY: Final = "autellix_thread_id"  # int, kept for tracing
PARENTS_KEY: Final = "autellix_parents"  # request ids of earlier calls of the same program
CALLS_LEFT_KEY: Final = "autellix_calls_left"  # int >= 1: CALLS_LEFT_HEADER's count
CALLS_LEFT_LIMIT: Final = 1 << 32
SESSION_KEY: Final = "session_id"  # vLLM's vllm_xargs.session_id

# -- Program id ranges in the core (u64) ---------------------------------------------------------
# [0, 2**62): given by a client through PROGRAM_KEY (the Autellix front end numbers its programs
# from 1 here). [2**62, 2**63): the plug-in's numbers for vLLM session ids. [2**63, 2**64): the
# plug-in's one-call programs for calls that name no program at all.
SESSION_PROGRAMS: Final = 1 << 62
SOLO_PROGRAMS: Final = 1 << 63
PROGRAM_ID_LIMIT: Final = 1 << 64
THREAD_ID_LIMIT: Final = 1 << 63

# -- Policies ------------------------------------------------------------------------------------
CorePolicy = Literal["fcfs", "mlfq", "plas", "atlas"]
CORE_POLICIES: Final[tuple[CorePolicy, ...]] = ("fcfs", "mlfq", "plas", "atlas")
# What an engine replica can run: a core policy, or vanilla vLLM's own scheduler (the baseline).
VANILLA_VLLM: Final = "vllm"
ENGINE_SCHEDULERS: Final = ("plas", "atlas", "mlfq", "fcfs", VANILLA_VLLM)
DEFAULT_POLICY: Final[CorePolicy] = "plas"
