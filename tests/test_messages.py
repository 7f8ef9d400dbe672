"""server/messages.py: the protocol's models against themselves, and against the code that sends or reads messages.

Real sessions are validated in test_protocol_doc.py (run streams) and tests/api/test_ws_messages.py
(websocket replies); this file checks the models' examples, what validation refuses, and that each
vocabulary the models spell out (error codes, commands, views, probes, hint codes, summary fields)
is the one the server's code really uses.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

from server import builder, live, messages, protocol, runner, trainer
from server.api import ws
from server.messages import (
    CLIENT_COMMANDS,
    COMMAND_MODELS,
    MESSAGE_MODELS,
    SERVER_MESSAGES,
    UnknownMessageType,
    example_of,
    validate_command,
    validate_message,
)
from server.probes import doctor

SERVER = Path(__file__).resolve().parent.parent / "server"


def literal_values(alias: Any) -> set[Any]:
    """The members of a named Literal type (``messages.ErrorCode`` -> {"bad_json", ...})."""
    return set(typing.get_args(alias.__value__))


def source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------
# The models themselves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", SERVER_MESSAGES, ids=lambda m: m.__name__)
def test_every_message_example_validates_against_its_model(model):
    message = example_of(model)
    assert isinstance(validate_message(message), model)


@pytest.mark.parametrize("model", CLIENT_COMMANDS, ids=lambda m: m.__name__)
def test_every_command_example_validates_against_its_model(model):
    assert isinstance(validate_command(example_of(model)), model)


def test_every_field_says_what_it_means():
    undocumented = []
    for model in {*SERVER_MESSAGES, *CLIENT_COMMANDS}:
        for cls in model.__mro__:
            if isinstance(cls, type) and issubclass(cls, messages.WireModel) and cls.__doc__ is None:
                undocumented.append(cls.__name__)
        for name, info in model.model_fields.items():
            if not info.description and name not in ("type", "cmd"):
                undocumented.append(f"{model.__name__}.{name}")
    assert not undocumented, undocumented


def test_a_message_type_without_a_model_is_refused():
    """A new message type must get its model (and regenerated types) before the tests accept it."""
    with pytest.raises(UnknownMessageType, match="loss_landscape.*server/messages.py"):
        validate_message({"type": "loss_landscape", "run_id": "r", "seq": 1, "t": 0.0, "step": 3})


def test_a_field_without_a_model_is_refused():
    message = {**example_of(messages.MetricsMsg), "grad_norm": 0.5}
    with pytest.raises(pydantic.ValidationError, match="grad_norm"):
        validate_message(message)


@pytest.mark.parametrize("change, culprit", [
    ({"lr": "nan"}, "lr"),                   # a plain float field does not take the wire's NaN strings
    ({"train_loss": "NaN"}, "train_loss"),   # WireNumber takes exactly "nan", "inf", "-inf"
    ({"step": 5.0}, "step"),                 # an integer field does not take a float
    ({"epoch": "0.5"}, "epoch"),             # nor a number in a string (strict, as JSON)
    ({"rate_hz": 5.0}, "rate_hz"),           # rate_hz is for live-view frames only
    ({"request_id": 3, "seq": None}, "seq"),  # the envelope's seq is never null
])
def test_validation_is_strict_about_wire_types(change, culprit):
    with pytest.raises(pydantic.ValidationError, match=culprit):
        validate_message({**example_of(messages.MetricsMsg), **change})


def test_wire_numbers_accept_the_non_finite_strings_and_omitted_keys_stay_absent():
    validate_message({**example_of(messages.MetricsMsg), "train_loss": "inf", "val_loss": "-inf"})
    status = example_of(messages.StatusMsg)
    validate_message({k: v for k, v in status.items() if k not in ("position", "seq", "t", "request_id")})
    with pytest.raises(pydantic.ValidationError, match="position"):
        validate_message({**status, "position": None})  # an omittable key is left out, not sent as null


def test_a_raw_nan_float_is_refused_because_json_cannot_carry_it():
    with pytest.raises(ValueError, match="JSON"):
        validate_message({**example_of(messages.MetricsMsg), "train_loss": float("nan")})


def test_live_frames_may_say_their_rate():
    boundary = example_of(messages.BoundaryMsg)
    assert validate_message(boundary).rate_hz == boundary["rate_hz"]
    with pytest.raises(pydantic.ValidationError, match="rate_hz"):
        validate_message({**boundary, "rate_hz": None})


def test_commands_are_validated_by_their_own_models():
    with pytest.raises(ValueError, match="unknown command 'jump'"):
        validate_command({"cmd": "jump"})
    with pytest.raises(pydantic.ValidationError, match="views"):
        validate_command({"cmd": "views", "run_id": "r", "views": {"loss_landscape": {}}})
    assert validate_command({"cmd": "probe", "run_id": "r", "probe": "gradcam", "class": 3}).class_ == 3


# ---------------------------------------------------------------------------
# The models against the code
# ---------------------------------------------------------------------------

# The ways server code sends an error code: protocol.error_message("code", ...), SchedulerError("code", ...),
# CommandError("code", ...), ClassError("code", ...), Client._error("code", ...), a literal {"code": "code"}, the default of
# getattr(exc, "code", "code"), and `code, text = "code", ...` in the scheduler's failure path.
ERROR_CODE_PATTERNS = (
    r'error_message\(\s*"(\w+)"',
    r'SchedulerError\(\s*"(\w+)"',
    r'CommandError\(\s*"(\w+)"',
    r'ClassError\(\s*"(\w+)"',  # server/classroom.py's refusals (REST bodies, and `start` replies)
    r'_error\(\s*"(\w+)"',
    r'"code":\s*"(\w+)"',
    r'"code",\s*"(\w+)"\)',
    r'\bcode(?:, \w+)? = "(\w+)"',
)


def sent_error_codes() -> dict[str, list[str]]:
    """Every error code the server's code spells, with the files that spell it (the doctor's hint codes excluded)."""
    found: dict[str, list[str]] = {}
    for path in sorted(SERVER.rglob("*.py")):
        if path.parent.name == "probes" or path.name == "messages.py":  # hint codes; the models' own examples
            continue
        text = source(path)
        for pattern in ERROR_CODE_PATTERNS:
            for code in re.findall(pattern, text):
                found.setdefault(code, []).append(str(path.relative_to(SERVER.parent)))
    return found


def test_the_error_codes_are_exactly_the_codes_the_server_sends():
    sent = sent_error_codes()
    documented = set(messages.ERROR_CODES)
    assert literal_values(messages.ErrorCode) == documented
    never_sent = documented - set(sent)
    assert not never_sent, f"ERROR_CODES lists codes no server code sends: {sorted(never_sent)}"
    undocumented = {code: files for code, files in sent.items() if code not in documented}
    assert not undocumented, f"codes sent without an entry in messages.ERROR_CODES: {undocumented}"


def test_the_error_code_scan_finds_each_way_of_sending_one():
    """The scan is what keeps ERROR_CODES true; it must see codes in every form the server uses."""
    sent = sent_error_codes()
    assert "server/api/ws.py" in sent["bad_frame"]           # self._error("bad_frame", ...)
    assert "server/protocol.py" in sent["bad_json"]          # CommandError("bad_json", ...) in decode_command
    assert "server/api/ws.py" in sent["bad_session"]         # {"type": "error", "code": "bad_session"}
    assert "server/scheduler.py" in sent["too_many_runs"]     # SchedulerError(\n "too_many_runs", ...)
    assert "server/worker.py" in sent["run_failed"]          # code, text = "run_failed", ...
    assert "server/runner.py" in sent["run_finished"]         # protocol.error_message("run_finished", ...)


def test_message_types_the_server_code_builds_all_have_models():
    built = set()
    for path in [SERVER / "protocol.py", SERVER / "runner.py", SERVER / "scheduler.py", SERVER / "worker.py", SERVER / "api" / "ws.py",
                 *sorted((SERVER / "live").glob("*.py"))]:
        built |= set(re.findall(r'"type":\s*"(\w+)"', source(path)))
    assert built, "the scan found no message types at all"
    assert built <= set(MESSAGE_MODELS), f"built without a model: {sorted(built - set(MESSAGE_MODELS))}"


def test_the_commands_are_the_ones_the_websocket_takes():
    assert set(COMMAND_MODELS) == set(ws.COMMANDS)
    assert messages.SetCommand.model_fields.keys() >= set(ws.SET_FIELDS)
    probe_args = {info.alias or name for name, info in messages.ProbeCommand.model_fields.items()}
    assert set(ws.PROBE_ARGS) - {"target"} <= probe_args  # "target" is an undocumented synonym of "class"


def test_probe_kinds_are_the_runners_on_demand_probes():
    assert literal_values(messages.ProbeKind) == set(runner.ON_DEMAND_PROBES)


def test_live_views_and_their_messages_are_the_frame_clocks():
    assert literal_values(messages.LiveViewName) == set(live.LIVE_VIEWS)
    assert messages.LIVE_VIEW_MESSAGES == {name: live.VIEWS[name].messages for name in live.LIVE_VIEWS}


def test_the_image_types_are_the_messages_that_carry_images():
    """protocol.IMAGE_TYPES (coalesced for slow clients) is every message with an Image somewhere inside."""

    def has_image(tp: Any, seen: set) -> bool:
        if tp is messages.Image:
            return True
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            if tp in seen:
                return False
            seen.add(tp)
            return any(has_image(f.annotation, seen) for f in tp.model_fields.values())
        return any(has_image(a, seen) for a in typing.get_args(getattr(tp, "__value__", tp)))

    with_images = {kind for kind, model in MESSAGE_MODELS.items() if has_image(model, set())}
    assert with_images == set(protocol.IMAGE_TYPES)


def test_summary_pieces_have_the_builders_fields():
    assert set(messages.LayerInfo.model_fields) == {f.name for f in dataclasses.fields(builder.LayerInfo)}
    assert set(messages.NetworkSummary.model_fields) == {f.name for f in dataclasses.fields(builder.NetworkSummary)}


def test_stop_reasons_cover_the_trainers_and_the_schedulers():
    reasons = literal_values(messages.StopReason)
    assert set(typing.get_args(trainer.StopReason)) <= reasons
    assert "error" in reasons  # jobs.empty_final("error", ...) when a run fails


def test_the_hint_vocabulary_is_the_doctors():
    text = source(SERVER / "probes" / "doctor.py")
    codes = {code for expression in re.findall(r"\bcode=([^,\n]+)", text) for code in re.findall(r'"(\w+)"', expression)}
    assert codes and literal_values(messages.HintCode) == codes
    assert literal_values(messages.HintSeverity) == set(typing.get_args(doctor.Severity))
    assert literal_values(messages.HintChart) == set(typing.get_args(doctor.Chart))


def test_the_builders_messages_validate_once_stamped():
    """The builders that need no probe result, through the envelope the run channel adds."""
    stamper = protocol.Stamper("r1")
    for message in (protocol.status_message("queued", position=1, request_id="start-1"),
                    protocol.status_message("failed", message="boom"),
                    protocol.error_message("run_failed", "RuntimeError: boom")):
        validate_message(stamper.stamp(message))


def live_views_prose() -> str:
    text = source(SERVER / "PROTOCOL.md")
    return text[text.index("## Live views"):text.index("## Client commands")]


def test_protocol_md_describes_the_frame_clocks_views():
    """PROTOCOL.md's hand-written table of live views, defaults and rates says what server/live does."""
    prose = live_views_prose()
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| (.*?) \|$", prose, re.M)
    assert [name for name, _, _ in rows] == list(live.LIVE_VIEWS)
    for name, sends, arguments in rows:
        view = live.VIEWS[name]
        assert tuple(re.findall(r"`(\w+)`", sends)) == view.messages, name
        assert re.findall(r"`(\w+)\??`", arguments) == [a.name for a in view.arguments], name
    defaults = re.search(r"watches the defaults: (.*?)\.", prose, re.S).group(1)
    assert re.findall(r"`(\w+)`", defaults) == list(live.DEFAULT_VIEWS)
    rates = dict(re.findall(r"`(\w+)`\s+(\d+)/s", prose))
    others = float(re.search(r"the others (\d+)/s", prose).group(1))
    for name in live.LIVE_VIEWS:
        assert float(rates.get(name, others)) == live.VIEWS[name].default_hz, name
