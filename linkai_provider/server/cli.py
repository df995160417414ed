"""``linkai-server``: serve the LinkAI speech recognition API on this machine.

Example::

    LINKAI_SERVER_API_KEYS=sk-local linkai-server --engine whisper
    curl http://127.0.0.1:8765/v1/audio/transcriptions \\
        -H "Authorization: Bearer sk-local" -F file=@speech.mp3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from linkai_provider import __version__
from linkai_provider.server.config import (
    API_KEYS_ENV,
    DEFAULT_HOST,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_PORT,
    ERROR_STYLES,
    TOO_LARGE_STYLES,
    ServerConfig,
    is_loopback,
    keys_from_env,
    parse_models,
)

__all__ = ["build_parser", "main", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``"104857600"``, ``"10MB"``, ``"100MiB"``, ``"1.5G"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes, or e.g. 10MB, 100MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` documents every flag."""
    from linkai_provider.server.engines import default_engine_name

    parser = argparse.ArgumentParser(
        prog="linkai-server",
        description="Serve the LinkAI speech recognition API (POST /v1/audio/transcriptions) locally, "
        "with real offline recognition (whisper) or a deterministic digest engine.",
        epilog=f"API keys come from --api-key or ${API_KEYS_ENV} (comma-separated). Test endpoints: "
        "GET /healthz, GET /_linkai/stats, POST /_linkai/stats/reset, GET/POST /_linkai/config. See docs/server.md.",
    )
    net = parser.add_argument_group("network and auth")
    net.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s, loopback only)")
    net.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind, 0 for any free port (default %(default)s)"
    )
    net.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"accepted Bearer key; repeat for several (also ${API_KEYS_ENV}=k1,k2)",
    )
    net.add_argument(
        "--no-auth", action="store_true", help="accept requests without any key (refused unless given explicitly)"
    )
    net.add_argument(
        "--max-upload-bytes",
        type=parse_size,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        metavar="SIZE",
        help="largest accepted file, e.g. 104857600, 10MB, 100MiB; larger is a 413 (default 100 MiB)",
    )
    net.add_argument(
        "--spool-dir", type=Path, default=None, help="folder for uploads in progress (default: the system temp folder)"
    )
    net.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help='write {"url", "port", "pid"} as JSON here once requests are accepted',
    )

    lim = parser.add_argument_group("API limits (all off by default)")
    lim.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=None,
        metavar="N",
        help="admit at most N transcription requests at once (counted after auth, until answered); one more "
        "is answered 429 with Retry-After (--retry-after) at once. Change it while running with "
        'POST /_linkai/config {"max_in_flight": N} (null: no limit)',
    )
    lim.add_argument(
        "--max-audio-seconds",
        type=_seconds,
        default=None,
        metavar="S",
        help="refuse audio longer than S seconds with 400 'Audio too long' (duration from the file's header, "
        "else by demuxing)",
    )
    lim.add_argument(
        "--too-large-style",
        choices=TOO_LARGE_STYLES,
        default="envelope",
        help="how an upload over --max-upload-bytes is answered: 413 with the API's JSON error body (in "
        "--error-style), or 413 with nginx's HTML page like a front proxy (default %(default)s)",
    )
    lim.add_argument(
        "--error-style",
        choices=ERROR_STYLES,
        default="linkai",
        help='the dialect of error answers: LinkAI\'s envelope {"success": false, "code", "message", "data"}, or '
        'OpenAI\'s {"error": {"message", "type", "param", "code"}} with its statuses and codes (e.g. a spent '
        "--credits is 429 insufficient_quota) (default %(default)s)",
    )
    lim.add_argument(
        "--models",
        type=parse_models,
        default=(),
        metavar="NAME[,NAME...]",
        help="the model names served: a request whose 'model' field names another is answered 404 "
        "model_not_found (default: any model field is accepted and ignored; a request without one is always "
        "accepted)",
    )

    eng = parser.add_argument_group("recognition")
    eng.add_argument(
        "--engine",
        choices=("whisper", "digest"),
        default=None,
        help=f"whisper: real offline recognition; digest: instant 'sha256:<hex> bytes:<n>' "
        f"(default: whisper when installed, here {default_engine_name()})",
    )
    eng.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a CTranslate2 Whisper model folder (default: the bundled Whisper base)",
    )
    eng.add_argument(
        "--workers",
        type=int,
        default=1,
        help="recognitions run in parallel; further requests queue (default %(default)s)",
    )
    eng.add_argument(
        "--cpu-threads", type=int, default=None, help="CPU threads per recognition (default: cores / workers)"
    )
    eng.add_argument("--beam-size", type=int, default=5, help="whisper beam size (default %(default)s)")

    flt = parser.add_argument_group("fault injection (all off by default)")
    flt.add_argument("--seed", type=int, default=None, help="seed of the fault random sequence")
    flt.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every answer after auth")
    flt.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform random extra latency, 0..N ms")
    flt.add_argument(
        "--latency-ms-per-audio-second",
        type=_non_negative,
        default=0.0,
        metavar="X",
        help="extra latency of X ms per second of uploaded audio before each recognition, on top of --latency-ms "
        "(recognition time grows with audio length, like a real API)",
    )
    flt.add_argument("--fail-503-rate", type=_rate, default=0.0, help="share of requests answered 503")
    flt.add_argument(
        "--rate-limit-rate", type=_rate, default=0.0, help="share of requests answered 429 with Retry-After"
    )
    flt.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of a 429 (default 1)")
    flt.add_argument("--drop-rate", type=_rate, default=0.0, help="share of connections reset without any answer")
    flt.add_argument(
        "--envelope-200-rate",
        type=_rate,
        default=0.0,
        help="share of requests answered HTTP 200 with the 503 error envelope",
    )
    flt.add_argument(
        "--credits",
        type=int,
        default=None,
        metavar="N",
        help="the account's balance: after N successful transcriptions every upload gets "
        "406 Insufficient account credits (reset with POST /_linkai/stats/reset)",
    )
    flt.add_argument(
        "--allow-fault-header",
        action="store_true",
        help="honour X-LinkAI-Fault / X-LinkAI-Fault-Delay-Ms / X-LinkAI-Fault-Retry-After request headers (tests)",
    )

    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--version", action="version", version=f"linkai-server {__version__}")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Turn parsed flags into a :class:`ServerConfig` (raises ``ValueError`` on a bad mix)."""
    from linkai_provider.server.engines import default_engine_name

    return ServerConfig.from_options(
        host=args.host,
        port=args.port,
        engine=args.engine or default_engine_name(),
        api_keys=tuple(args.api_key) + keys_from_env(),
        no_auth=args.no_auth,
        max_upload_bytes=args.max_upload_bytes,
        workers=args.workers,
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
        model_dir=args.model_dir,
        spool_dir=args.spool_dir,
        seed=args.seed,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        fail_503_rate=args.fail_503_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        drop_rate=args.drop_rate,
        envelope_200_rate=args.envelope_200_rate,
        allow_fault_header=args.allow_fault_header,
        credits=args.credits,
        max_in_flight=args.max_in_flight,
        latency_ms_per_audio_second=args.latency_ms_per_audio_second,
        max_audio_seconds=args.max_audio_seconds,
        too_large_style=args.too_large_style,
        error_style=args.error_style,
        models=args.models,
    )


def _write_ready_file(path: Path, url: str, port: int) -> None:
    # Atomic, so a waiting test never reads half a file.
    fd, tmp = tempfile.mkstemp(prefix=".ready.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "port": port, "pid": os.getpid()}, fh)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``linkai-server``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not is_loopback(config.host):
        logging.getLogger("linkai_provider.server").warning(
            "binding %s: the server is reachable from other machines", config.host
        )

    try:
        from linkai_provider.server.runner import build_server
    except ImportError as exc:
        print(f"linkai-server: missing dependency ({exc}); install airflow-provider-linkai[server]", file=sys.stderr)
        return 1
    from linkai_provider.server.model import ModelError

    state: dict[str, object] = {}

    def announce() -> None:
        url = state["url"]
        print(f"linkai-server {__version__} listening on {url} (engine {config.engine})", flush=True)
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, str(url), int(state["port"]))  # type: ignore[call-overload]

    try:
        server, sock = build_server(config, on_started=announce)
    except ModelError as exc:
        print(f"linkai-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"linkai-server: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    state.update(url=f"http://{host}:{port}", port=port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
