"""The `dlplay` command.

    dlplay [--host H] [--port P] [--open]        start the server and print its URL
           [--token T]                           beyond loopback (--host 0.0.0.0) an access token is required
    dlplay run EXPERIMENT.json [--steps N]       train headless; JSON Lines on stdout
    dlplay export RUN_OR_EXPERIMENT --format F   PyTorch code, notebook, ONNX, TorchScript or safetensors

Invalid input exits with code 2 and one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError

EXIT_INVALID = 2


# `dlplay run` trains in slices this long and looks for Ctrl-C between them: the longest wait for a stop.
STOP_LATENCY_SECONDS = 0.5  # seconds

def format_validation_error(error: ValidationError) -> str:
    """One line naming the first offending field of a pydantic error, e.g. ``train.optimizer.lr: ...``."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "document"
    extra = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{extra}"


def load_experiment(path: str):
    """Read and validate an experiment document; raises ValueError with a one-line message."""
    from server.schemas import Experiment

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(document, dict) and "experiment" in document and "data" not in document:
        document = document["experiment"]  # a preset file wraps the document with its description
    try:
        return Experiment.model_validate(document)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid experiment: {format_validation_error(exc)}") from None


def run_command(args: argparse.Namespace) -> int:
    """Train one experiment headless, printing every protocol message as a JSON line."""
    from server import protocol
    from server.runner import RunSession

    _use_server_threads()
    try:
        experiment = load_experiment(args.experiment)
        if args.steps is not None:
            experiment = experiment.model_copy(
                update={"train": experiment.train.model_copy(update={"max_steps": args.steps})}
            )
        if args.no_probes:
            experiment = experiment.model_copy(
                update={"probes": experiment.probes.model_copy(update={"enabled": False})}
            )
        from server.export.cli import local_init_weights  # issue 12: the weights train.init_from names

        session = RunSession(experiment, run_id=Path(args.experiment).stem, device=args.device,
                             init_weights=local_init_weights(experiment, args.init_from))
    except ValueError as exc:
        print(f"dlplay: {exc}", file=sys.stderr)
        return EXIT_INVALID
    stamper = protocol.Stamper(session.run_id)
    out = sys.stdout
    stop = _stop_on_signals()

    def emit(messages: list[dict]) -> None:
        for message in messages:
            out.write(json.dumps(stamper.stamp(message), separators=(",", ":")) + "\n")
        out.flush()

    emit(session.start())
    while not session.done and not stop.is_set():
        emit(session.advance(max_steps=10_000, max_seconds=STOP_LATENCY_SECONDS))
    if not session.done:
        emit(session.stop())
    failed = session.final is not None and session.final["stop_reason"] in ("non_finite", "exploded")
    session.close()
    return 1 if failed else 0


def _stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or a plain ``kill`` (SIGTERM) sets; the loop then ends the run cleanly.

    A flag rather than KeyboardInterrupt: an exception raised mid-write would cut a JSON line in two.
    And a job started in the background by a non-interactive shell (``dlplay run x.json &``) inherits an
    ignored SIGINT, which installing a handler of our own replaces.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def _use_server_threads() -> None:
    """torch's and NumPy's CPU threads as the server sets them (cores - 1; see server/threads.py)."""
    from server.config import settings
    from server.threads import use_threads

    use_threads(settings.torch_threads)


def serve_command(args: argparse.Namespace) -> int:
    from server.config import settings
    from server.security import exposure_problem

    token = args.token or settings.access_token
    problem = exposure_problem(args.host, token)
    if problem:  # before the engine loads: a refusal is instant and names the fix
        print(f"dlplay: {problem}", file=sys.stderr)
        return EXIT_INVALID
    from server.app import serve

    serve(args.host, args.port, args.open, token=token)
    return 0


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    from server.config import settings

    serve_parser = argparse.ArgumentParser(prog="dlplay", description="The deep-learning playground server.")
    serve_parser.add_argument("--host", default=settings.host, help=f"interface to listen on (default {settings.host})")
    serve_parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    serve_parser.add_argument("--open", action="store_true", help="open the page in a browser")
    serve_parser.add_argument("--token", default=None, metavar="TOKEN",
                              help="access token the page asks for (required with a --host beyond loopback; "
                                   "or set DLPLAY_ACCESS_TOKEN); at least 8 characters")

    run_parser = argparse.ArgumentParser(prog="dlplay run", description="Train an experiment headless; JSON Lines on stdout.")
    run_parser.add_argument("experiment", help="an experiment document (JSON), e.g. models/lenet5_mnist.json")
    run_parser.add_argument("--steps", type=int, default=None, help="stop after N steps")
    run_parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="override train.device")
    run_parser.add_argument("--no-probes", action="store_true", help="train without probes (metrics only)")
    run_parser.add_argument("--init-from", default=None, metavar="FILE",
                            help="start from these weights (a .safetensors file from dlplay export)")
    return serve_parser, run_parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    serve_parser, run_parser = build_parsers()
    if argv and argv[0] == "run":
        args = run_parser.parse_args(argv[1:])
        if args.steps is not None and args.steps < 1:
            print("dlplay: --steps must be at least 1", file=sys.stderr)
            return EXIT_INVALID
        return run_command(args)
    if argv and argv[0] == "export":  # issue 12
        from server.export.cli import export_main

        return export_main(argv[1:])
    return serve_command(serve_parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
