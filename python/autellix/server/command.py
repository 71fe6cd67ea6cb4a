"""The ``serve`` subcommand: start the engines and serve the HTTP API on uvloop.

Flags it does not know itself are `vllm serve`'s frontend flags (`--chat-template`,
`--tool-parser-plugin`, `--enable-prompt-tokens-details`, ...), handed to vLLM's own parser, which
refuses unknown ones. Heavy imports (vLLM, aiohttp) happen inside the handler, so
``autellix --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
from typing import Any

from autellix.arg_types import port, positive_float, positive_int, positive_or_inf
from autellix.contract import DEFAULT_POLICY, ENGINE_SCHEDULERS
from autellix.server.vllm_serving import DEFAULT_TOOL_PARSER, DEFAULT_TOOL_STRICT_LEVEL, tool_flags

__all__ = ["register"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from '1073741824', '1GiB', '512MiB', '2G' (binary units) or '1GB' (decimal)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1GiB, 512MiB, 1073741824)")
    number, unit, binary = match.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    # "G" alone and "GiB" are binary; "GB" is decimal.
    base = 1000 if (unit and not binary and text.strip().lower().endswith("b")) else 1024
    return int(float(number) * base**power)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve an OpenAI-compatible, program-aware HTTP API",
        description="Start vLLM engine replicas with Autellix's scheduler and serve the OpenAI-compatible "
        "HTTP API with program endpoints, /health and /metrics.",
    )
    e = p.add_argument_group("engines")
    e.add_argument("--model", help="a known model name (tiny, smollm2-135m-instruct) or a local folder "
                   "(default: smollm2-135m-instruct, converted on first use)")
    e.add_argument("--served-model-name", help="the name clients use in 'model' (default: from --model)")
    e.add_argument("--engines", type=positive_int, default=1, help="engine replicas (default 1)")
    e.add_argument("--ray", metavar="ADDRESS", dest="ray_address",
                   help="run the replicas as Ray actors on the cluster at ADDRESS (as ray.init takes it: auto or "
                   "host:port), spread over its nodes; needs the 'ray' extra and the model at the same path on "
                   "every node (default: local replicas)")
    e.add_argument("--policy", choices=ENGINE_SCHEDULERS, default=DEFAULT_POLICY,
                   help="scheduling policy; 'vllm' is vanilla vLLM's scheduler (default plas)")
    e.add_argument("--max-num-seqs", type=positive_int, default=64, help="calls running at once per engine (default 64)")
    e.add_argument("--max-model-len", type=positive_int, default=2048, help="context length in tokens (default 2048)")
    e.add_argument("--kv-cache-memory", type=parse_size, default=1 << 30, metavar="SIZE",
                   help="KV cache per engine, bytes or a size like 1GiB (default 1GiB)")
    e.add_argument("--starvation-ratio", type=positive_or_inf, help="anti-starvation beta (default 4; inf disables)")
    eager = e.add_mutually_exclusive_group()
    eager.add_argument("--enforce-eager", dest="enforce_eager", action="store_true", default=True,
                       help="run the model eagerly, no graph capture (default: on; starts fast)")
    eager.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false",
                       help="let vLLM compile and capture graphs (slower start, faster steps)")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    s.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every route but /health; give it several "
                   "times for several clients, each seeing only its own programs")
    s.add_argument("--max-queued-calls", type=positive_int, default=512,
                   help="calls outstanding beyond which new ones get 429 (default 512)")
    s.add_argument("--program-ttl", type=positive_float, default=900.0,
                   help="end programs idle for this many seconds (default 900)")
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    v = p.add_argument_group("vLLM's OpenAI layer (any other `vllm serve` frontend flag is passed on too)")
    v.add_argument("--tool-call-parser", default=DEFAULT_TOOL_PARSER,
                   help="vLLM tool parser for tool_choice 'auto'; 'none' turns auto tool choice off (default hermes, "
                   "which the built-in models' chat template speaks)")
    v.add_argument("--tool-strict-level", default=DEFAULT_TOOL_STRICT_LEVEL, choices=("auto", "function", "parameter"),
                   help="vLLM's tool_strict_level: 'parameter' (default) holds every forced call's arguments to the "
                   "tool's schema; 'function' only the call's envelope; 'auto' (vLLM's default) only tools marked strict")
    p.set_defaults(func=serve, passes_unknown_args=True)


def vllm_frontend_args(args: argparse.Namespace) -> tuple[str, ...]:
    """`vllm serve` frontend flags for vLLM's serving layer, from ours and the unknown rest."""
    return (*tool_flags(args.tool_call_parser, args.tool_strict_level), *getattr(args, "unknown_args", ()))


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening: connections are refused until the
    server starts. Raises OSError (the CLI prints it) if the address is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's own sites do
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def serve(args: argparse.Namespace) -> int:
    import uvloop
    from aiohttp import web

    from autellix.engine import EngineOptions
    from autellix.server.app import make_app
    from autellix.server.settings import ServerSettings
    from autellix.server.state import DRIVER

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("autellix.server")
    options = EngineOptions(
        model=args.model,
        engines=args.engines,
        scheduler=args.policy,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len,
        kv_cache_memory_bytes=args.kv_cache_memory,
        starvation_ratio=args.starvation_ratio,
        served_model_name=args.served_model_name,
        engine_args={"enforce_eager": args.enforce_eager},
        ray_address=args.ray_address,
    )
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        api_keys=tuple(args.api_key),
        max_queued_calls=args.max_queued_calls,
        program_ttl=args.program_ttl,
        vllm_frontend_args=vllm_frontend_args(args),
    )
    from autellix.server.vllm_serving import frontend_args

    frontend_args(args.model or "model", "model", settings.vllm_frontend_args)  # bad flags fail before the engines start
    # Bound before the engines start: a busy port fails at once, not after the model loads, and
    # no socket the engines open meanwhile (vLLM picks free ports of its own) can take it.
    sock = bound_socket(args.host, args.port)
    app = make_app(settings, options)
    host = f"[{args.host}]" if ":" in args.host else args.host

    def ready(_banner: str) -> None:  # aiohttp calls this once the socket listens
        log.info(
            "Autellix ready: http://%s:%d/v1 serving model %r (%s, %d engine%s)",
            host, args.port, app[DRIVER].served_model_name, args.policy,
            args.engines, "" if args.engines == 1 else "s",
        )

    web.run_app(
        app,
        sock=sock,
        print=ready,
        access_log=None,
        handler_cancellation=True,  # a client that hangs up cancels its call, which aborts it
        shutdown_timeout=5.0,
        loop=uvloop.new_event_loop(),
    )
    return 0
