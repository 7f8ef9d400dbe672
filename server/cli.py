"""The `dlplay` command.

    dlplay [--host H] [--port P] [--open]        start the server and print its URL
           [--token T]                           beyond loopback (--host 0.0.0.0) an access token is required
    dlplay class [--host H] [--port P] [--title T] [--ray ADDRESS] [--new]
                                                 start (or reopen) a class on the LAN: prints the join URL,
                                                 its code, a QR code and the teacher's URL
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


def class_command(args: argparse.Namespace) -> int:
    """``dlplay class``: create the class (or reopen the open one) in the store, print how to join, then serve.

    The class is made before the server starts, in the same SQLite store: the server's classroom
    loads it at start like a class a previous server left open (server/classroom.py).
    """
    from server.config import settings
    from server.security import exposure_problem

    problem = exposure_problem(args.host, args.token or settings.access_token, class_open=True)
    if problem:  # only a short --token can be wrong here; a class needs no token
        print(f"dlplay: {problem}", file=sys.stderr)
        return EXIT_INVALID
    from server.app import serve

    try:
        classroom, reopened = open_class(args.title, new=args.new)
    except ValueError as error:
        print(f"dlplay: {error}", file=sys.stderr)
        return EXIT_INVALID
    teacher_url = print_class_banner(classroom, args.host, args.port, reopened=reopened)
    serve(args.host, args.port, args.open, token=args.token, class_open=True, ray_address=args.ray,
          open_url=teacher_url)
    return 0


def open_class(title: str | None, *, new: bool = False):
    """The class to run: the open one (reopened), or a new one (``new`` ends the open one first)."""
    from server.classroom import ClassroomService
    from server.config import settings
    from server.security import load_secret
    from server.sessions import SessionIssuer
    from server.store import Store

    store = Store(settings.data_dir, metric_cap=settings.metric_history_points)
    try:
        service = ClassroomService(store, SessionIssuer(load_secret(settings.data_dir), 1), settings)
        if new and service.current is not None:
            service.end()
        if service.current is not None:
            return service.current, True
        return service.create(title or ""), False
    finally:
        store.close()


def print_class_banner(classroom, host: str, port: int, *, reopened: bool, out=None) -> str:
    """Print the students' join URL(s), the code, a QR code of the join URL and the teacher's URL; returns the latter."""
    import segno

    from server.security import WILDCARD_HOSTS, is_loopback, share_urls

    out = out or sys.stdout
    joins = share_urls(host, port, None, "/join")
    network = [url for where, url in joins if where == "on the network"]
    join_url = (network or [joins[0][1]])[0]
    bind = host.strip("[]")
    teacher_host = "127.0.0.1" if bind in WILDCARD_HOSTS or is_loopback(bind) else (f"[{bind}]" if ":" in bind else bind)
    teacher_url = f"http://{teacher_host}:{port}/teacher?key={classroom.teacher_key}"
    state = "reopened" if reopened else "started"
    print(f"dlplay class {classroom.title!r} {state}", file=out)
    print(f"  students open   {join_url}", file=out)
    for where, url in joins:
        if url != join_url:
            print(f"              or  {url}  ({where})", file=out)
    print(f"  class code      {classroom.code}", file=out)
    print(f"  teacher         {teacher_url}", file=out)
    print("                  (keep this link to yourself: it opens the dashboard and controls the class)", file=out)
    if not network:
        print("  no network address found: students on other computers cannot reach this one", file=out)
    try:
        segno.make(join_url, error="m").terminal(out=out, compact=True, border=2)
    except UnicodeEncodeError:  # a terminal without the block characters
        print("  (the QR code of the join URL is on the teacher's page)", file=out)
    out.flush()
    return teacher_url


def build_class_parser() -> argparse.ArgumentParser:
    from server.config import settings

    parser = argparse.ArgumentParser(prog="dlplay class", description="Start (or reopen) a class on the local network.")
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (default 0.0.0.0: every one, so "
                        "students' computers can reach it)")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--title", default=None, help="the class's title, shown to students and on the dashboard")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="train runs on this Ray cluster (e.g. ray://head:10001 or auto; needs .[cluster])")
    parser.add_argument("--new", action="store_true", help="end the class that is open and start a new one")
    parser.add_argument("--token", default=None, metavar="TOKEN",
                        help="also accept this access token (at least 8 characters); a class needs none")
    parser.add_argument("--open", action="store_true", help="open the teacher's dashboard in a browser")
    return parser


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
    if argv and argv[0] == "class":  # issue 10
        return class_command(build_class_parser().parse_args(argv[1:]))
    if argv and argv[0] == "export":  # issue 12
        from server.export.cli import export_main

        return export_main(argv[1:])
    return serve_command(serve_parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
