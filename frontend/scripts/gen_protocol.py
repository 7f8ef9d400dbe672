"""Write frontend/src/protocol.ts and the generated sections of server/PROTOCOL.md from server/messages.py.

The pydantic models in ``server/messages.py`` are the one source of the websocket protocol
(STYLE.md habit 11). This script renders them twice:

- ``frontend/src/protocol.ts``: one TypeScript interface per model (``extends`` follows the
  Python classes), one ``export type`` per named type, the ``ServerMessage`` and
  ``ClientCommand`` unions and their helpers; descriptions become doc comments. REST payload
  types are hand-written in ``frontend/src/restTypes.ts`` and re-exported from here.
- ``server/PROTOCOL.md``: the sections between ``<!-- generated:NAME -->`` and
  ``<!-- /generated:NAME -->`` markers (envelope, commands, error codes, messages with their
  field tables and examples, shared pieces). Everything outside the markers is hand-written prose.

Run it after changing server/messages.py:  ``cd frontend && npm run gen-types``
(or ``python3 scripts/gen_protocol.py``). ``--check`` exits 1 when a generated file is stale.
It needs only pydantic (no torch), like gen_types.py.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Union

FRONTEND = Path(__file__).resolve().parents[1]
ROOT = FRONTEND.parent
TS_TARGET = FRONTEND / "src" / "protocol.ts"
MD_TARGET = ROOT / "server" / "PROTOCOL.md"

sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402
from typing_extensions import TypeAliasType  # noqa: E402

from server import messages  # noqa: E402

WIDTH = 110  # characters per line of generated TypeScript and doc comments
# REST payloads the page imports from ./protocol; hand-written (they are not messages) in restTypes.ts.
REST_TYPES = ("Health", "MetricPoint", "PresetInfo", "RunInfo", "ValidateResult")
# Named types whose members have their own documentation: alias name -> member -> text.
MEMBER_DOCS = {"ErrorCode": messages.ERROR_CODES}

Named = Union[type[BaseModel], TypeAliasType]

# Fields the page cannot take with their wire type yet: (TypeScript model name, field) -> the narrower
# TypeScript type it gets for now. The models (and PROTOCOL.md) keep the true wire type; the tests validate
# real messages against it. Each entry is a page bug waiting to be fixed (a null or "nan" the page's
# arithmetic does not expect); remove it when the page handles the wire type.
PAGE_TYPES: dict[tuple[str, str], str] = {
    ("MetricsMsg", "examples_per_s"): "number",  # null on an evaluation-only point (RunControls.statusText)
    ("BoundaryMsg", "probs"): "Image",  # null for more than two classes (Boundary2D decodes it)
    ("ConfusionMsg", "per_class_accuracy"): "number[]",  # null for a class with no example (Evaluation)
    ("FeatureMapLayer", "cols"): "number",  # null for flat layers (FeatureMaps)
    ("FeatureMapLayer", "values"): "number[] | null",  # "nan" when the network outputs NaN (FeatureMaps)
    ("GradCheckEntry", "rel_error"): "number",  # "inf" when a gradient is not finite (GradCheck)
    ("OutputGradient", "std"): "number",  # "nan" on a diverging step (LayerStats depth profile)
    ("UpdateRatio", "ratio"): "number",  # "nan" on a diverging step (LayerStats update ratios)
    ("HintMsg", "chart"): "string | null",  # DoctorNotes compares it with ""
}


# ---------------------------------------------------------------------------
# Python types -> TypeScript (and Markdown) type expressions
# ---------------------------------------------------------------------------


def ts_name(item: Named) -> str:
    """The TypeScript name of a model (its ``title`` when set, else the class name) or a named type."""
    if isinstance(item, TypeAliasType):
        return item.__name__
    return item.model_config.get("title") or item.__name__


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def is_protocol_model(tp: Any) -> bool:
    """A model of server/messages.py (others, like the Experiment document, come from generated/schema.ts)."""
    return is_model(tp) and issubclass(tp, messages.WireModel)


def render_type(tp: Any, markdown: bool = False) -> str:
    """A type expression: TypeScript, or for Markdown the same with integer told apart from number."""
    if tp is Any:
        return "unknown"
    if isinstance(tp, TypeAliasType) or is_model(tp):
        return ts_name(tp)
    if tp is type(None) or tp is None:
        return "null"
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer" if markdown else "number"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return render_type(args[0], markdown)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)] + [a for a in args if a is type(None)]
        return " | ".join(render_type(a, markdown) for a in members)
    if origin is list:
        inner = render_type(args[0], markdown)
        return f"({inner})[]" if " | " in inner else f"{inner}[]"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return render_type(list[args[0]], markdown)  # type: ignore[valid-type]
        return "[" + ", ".join(render_type(a, markdown) for a in args) + "]"
    if origin is dict:
        key, value = args
        rendered = render_type(value, markdown)
        if key is str:
            return f"Record<string, {rendered}>"
        return f"Partial<Record<{render_type(key, markdown)}, {rendered}>>"
    raise TypeError(f"gen_protocol cannot render the type {tp!r}; extend render_type")


def references(tp: Any) -> Iterator[Any]:
    """The models and named types a type expression names directly (not those inside them)."""
    if isinstance(tp, TypeAliasType) or is_model(tp):
        yield tp
        return
    for arg in typing.get_args(tp):
        if arg is not Ellipsis and not isinstance(arg, (str, int, float, bool)):
            yield from references(arg)


def inner_references(item: Named) -> Iterator[Any]:
    """What a model's own fields (or a named type's value) refer to."""
    if isinstance(item, TypeAliasType):
        yield from references(item.__value__)
        return
    for _name, info in own_fields(item):
        yield from references(info.annotation)


def base_model(model: type[BaseModel]) -> type[BaseModel] | None:
    """The protocol model ``model`` extends (None for the direct subclasses of WireModel)."""
    base = model.__bases__[0]
    return base if is_protocol_model(base) and base is not messages.WireModel else None


def own_fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """(wire name, FieldInfo) of the fields a model declares itself, in declaration order."""
    declared = model.__dict__.get("__annotations__", {})
    fields = [(info.alias or name, info) for name, info in model.model_fields.items() if name in declared]
    # The discriminator first, as a reader looks for it: `type` of a message, `cmd` of a command.
    return sorted(fields, key=lambda item: item[0] not in ("type", "cmd"))


def doc_of(item: Named) -> str:
    """A model's docstring or a named type's documentation, with RST ``code`` as Markdown `code`."""
    if isinstance(item, TypeAliasType):
        text = messages.TYPE_DOCS.get(item.__name__, "")
    else:
        text = textwrap.dedent(item.__doc__ or "").strip()
        first, _, rest = text.partition("\n")
        text = first.strip() + ("\n" + textwrap.dedent(rest) if rest else "")
    return text.replace("``", "`").strip()


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


# ---------------------------------------------------------------------------
# What is rendered where
# ---------------------------------------------------------------------------


@dataclass
class Layout:
    """The models and named types, grouped: shared by several messages/commands, or private to one."""

    messages: tuple[type[BaseModel], ...]
    commands: tuple[type[BaseModel], ...]
    shared: list[Named] = field(default_factory=list)
    private: dict[type[BaseModel], list[Named]] = field(default_factory=dict)
    external: list[type[BaseModel]] = field(default_factory=list)  # models of generated/schema.ts

    @classmethod
    def of(cls, server_messages: tuple, client_commands: tuple) -> "Layout":
        bases = {messages.Envelope, messages.DirectEnvelope, messages.CommandBase, messages.RunCommand}
        users: dict[Any, list[type[BaseModel]]] = {}
        order: list[Any] = []
        external: list[type[BaseModel]] = []

        def visit(item: Any, top: type[BaseModel]) -> None:
            if is_model(item) and not is_protocol_model(item):
                if item not in external:
                    external.append(item)
                return
            if item in bases or item in server_messages or item in client_commands:
                return
            if item not in users:
                users[item] = []
                order.append(item)
            if top in users[item]:
                return
            users[item].append(top)
            for ref in inner_references(item):
                visit(ref, top)
            base = base_model(item) if is_model(item) else None
            if base is not None:
                visit(base, top)

        for top in (*server_messages, *client_commands, *sorted(bases, key=lambda b: b.__name__)):
            for ref in inner_references(top):
                visit(ref, top)
            base = base_model(top)
            while base is not None and base not in bases:
                visit(base, top)
                base = base_model(base)
        layout = cls(server_messages, client_commands, external=external)
        for item in order:
            tops = users[item]
            if len(tops) > 1 or tops[0] in bases:
                layout.shared.append(item)
            else:
                layout.private.setdefault(tops[0], []).append(item)
        # Named types first, then models: the small vocabulary before the structures that use it.
        layout.shared.sort(key=lambda item: not isinstance(item, TypeAliasType))
        return layout


# ---------------------------------------------------------------------------
# TypeScript
# ---------------------------------------------------------------------------


def ts_doc(text: str, indent: str = "") -> list[str]:
    """A doc comment: one line when it fits, else wrapped; paragraphs kept apart."""
    parts = paragraphs(text)
    if not parts:
        return []
    one = f"{indent}/** {parts[0]} */"
    if len(parts) == 1 and len(one) <= WIDTH:
        return [one]
    lines = [f"{indent}/**"]
    for i, part in enumerate(parts):
        if i:
            lines.append(f"{indent} *")
        prefix = f"{indent} * "
        lines += textwrap.wrap(part, WIDTH - len(indent) - 3, initial_indent=prefix, subsequent_indent=prefix,
                               break_on_hyphens=False, break_long_words=False)
    return lines + [f"{indent} */"]


def ts_alias(alias: TypeAliasType) -> list[str]:
    name = ts_name(alias)
    value = alias.__value__
    lines = ts_doc(doc_of(alias))
    member_docs = MEMBER_DOCS.get(name)
    flat = f"export type {name} = {render_type(value)};"
    if member_docs is None and len(flat) <= WIDTH:
        return lines + [flat]
    lines.append(f"export type {name} =")
    members = typing.get_args(value) if typing.get_origin(value) is Literal else None
    if members is None:
        return lines + [f"  {render_type(value)};"]
    for i, member in enumerate(members):
        if member_docs is not None:
            lines += ts_doc(member_docs[member], "  ")
        lines.append(f"  | {json.dumps(member)}" + (";" if i == len(members) - 1 else ""))
    return lines


def ts_interface(model: type[BaseModel]) -> list[str]:
    base = base_model(model)
    lines = ts_doc(doc_of(model))
    lines.append(f"export interface {ts_name(model)}" + (f" extends {ts_name(base)}" if base else "") + " {")
    for name, info in own_fields(model):
        wire = render_type(info.annotation)
        shown = PAGE_TYPES.get((ts_name(model), name), wire)
        note = "" if shown == wire else f" (on the wire: `{wire}`; typed `{shown}` until the page handles that)"
        lines += ts_doc((info.description or "") + note, "  ")
        optional = "" if info.is_required() else "?"
        lines.append(f"  {name}{optional}: {shown};")
    return lines + ["}"]


def ts_item(item: Named) -> list[str]:
    return ts_alias(item) if isinstance(item, TypeAliasType) else ts_interface(item)


def ts_section(title: str) -> list[str]:
    rule = "// " + "-" * (WIDTH - 3)
    return ["", rule, f"// {title}", rule]


def ts_union(name: str, doc: str, members: list[str]) -> list[str]:
    return ts_doc(doc) + [f"export type {name} ="] + [f"  | {m}" for m in members[:-1]] + [f"  | {members[-1]};"]


def render_ts(layout: Layout) -> str:
    out = [
        "/* eslint-disable */",
        "/**",
        " * GENERATED by frontend/scripts/gen_protocol.py from server/messages.py (pydantic models).",
        " * Do not edit by hand: change the models and run `npm run gen-types` in frontend/.",
        " *",
        " * The wire protocol between the page and the server (server/PROTOCOL.md explains it). Every message of a",
        " * run's stream carries the envelope {type, run_id, seq, t}; `seq` counts 1, 2, ... per run and lets the",
        " * socket resume with `subscribe {run_id, after_seq}` after a reconnect.",
        " */",
        "",
    ]
    for model in layout.external:
        out.append(f'import type {{ {ts_name(model)} }} from "./generated/schema";')
    out.append("")
    out.append("// REST payloads (/api): hand-written, they are not websocket messages.")
    out.append(f'export type {{ {", ".join(REST_TYPES)} }} from "./restTypes";')

    out += ts_section("Shared pieces")
    for item in layout.shared:
        out += [""] + ts_item(item)

    out += ts_section("Server -> page messages")
    for top in (messages.Envelope, messages.DirectEnvelope, *layout.messages):
        for item in layout.private.get(top, []):
            out += [""] + ts_item(item)
        out += [""] + ts_interface(top)
    out.append("")
    out += ts_union("ServerMessage", "Every message the server sends.", [ts_name(m) for m in layout.messages])
    out += [
        "",
        "export type MessageType = ServerMessage[\"type\"];",
        "/** The message of one type: `MessageOf<\"metrics\">` is `MetricsMsg`. */",
        "export type MessageOf<T extends MessageType> = Extract<ServerMessage, { type: T }>;",
    ]

    out += ts_section("Page -> server commands (websocket)")
    for top in (messages.CommandBase, messages.RunCommand, *layout.commands):
        for item in layout.private.get(top, []):
            out += [""] + ts_item(item)
        out += [""] + ts_interface(top)
    out.append("")
    out += ts_union("ClientCommand", "Every command the page can send.", [ts_name(c) for c in layout.commands])
    out += ["", "export type CommandName = ClientCommand[\"cmd\"];", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Markdown (PROTOCOL.md's generated sections)
# ---------------------------------------------------------------------------


def md_cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, and `<` escaped so `<id>` is not taken for HTML."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def md_code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def md_field_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    for name, info in own_fields(model):
        if name in skip:
            continue
        shown = name if info.is_required() else f"{name}?"
        kind = md_code(render_type(info.annotation, markdown=True))
        rows.append(f"| `{shown}` | {kind} | {md_cell(info.description or '')} |")
    return rows


def md_alias_line(alias: TypeAliasType) -> str:
    name = ts_name(alias)
    if name in MEMBER_DOCS:
        return f"- `{name}`: {md_cell(doc_of(alias))} The codes are listed under [Error codes](#error-codes)."
    return f"- `{name}` = {md_code(render_type(alias.__value__, markdown=True))}: {md_cell(doc_of(alias))}"


def md_piece(item: Named, heading: str | None = None) -> list[str]:
    """A named type as one line, or a model as a paragraph and its field table."""
    if isinstance(item, TypeAliasType):
        return [md_alias_line(item)]
    base = base_model(item)
    intro = " ".join(paragraphs(doc_of(item)))
    if base is not None:
        intro += f" Also has the fields of `{ts_name(base)}`."
    title = heading or f"`{ts_name(item)}`:"
    return [f"{title} {intro}", ""] + md_field_table(item)


def example_json(message: dict[str, Any]) -> str:
    """The example as PROTOCOL.md shows it: one top-level field per line, values compact."""
    compact = {"ensure_ascii": False, "separators": (", ", ": ")}
    fields = [f"  {json.dumps(k)}: {json.dumps(v, **compact)}" for k, v in message.items()]
    return "{\n" + ",\n".join(fields) + "\n}"


def md_envelope() -> list[str]:
    out = ["Stream messages (every type except `pong`):", ""] + md_field_table(messages.Envelope)
    out += ["", "Replies to one client (`error`, `pong`, and the `status` that ends a stored replay) carry only some "
            "of these:", ""] + md_field_table(messages.DirectEnvelope)
    return out


def md_commands(layout: Layout) -> list[str]:
    out = ["| command | fields | what it does |", "| --- | --- | --- |"]
    for command in layout.commands:
        cells = []
        inherited = own_fields(messages.RunCommand) if issubclass(command, messages.RunCommand) else []
        for name, info in inherited + own_fields(command):
            if name == "cmd":
                continue
            shown = name if info.is_required() else f"{name}?"
            kind = md_code(render_type(info.annotation, markdown=True))
            cells.append(f"`{shown}` {kind}: {md_cell(info.description or '')}")
        name = messages._tag(command, "cmd")
        out.append(f"| `{name}` | {'<br>'.join(cells) or '—'} | {md_cell(' '.join(paragraphs(doc_of(command))))} |")
    for command in layout.commands:
        for item in layout.private.get(command, []):
            out += ["", md_piece(item)[0] if isinstance(item, TypeAliasType) else "\n".join(md_piece(item))]
    return out


def md_errors() -> list[str]:
    out = ["| code | sent when |", "| --- | --- |"]
    for code, when in messages.ERROR_CODES.items():
        out.append(f"| `{code}` | {md_cell(when)} |")
    return out


def md_messages(layout: Layout) -> list[str]:
    out: list[str] = []
    for model in layout.messages:
        kind = messages._tag(model, "type")
        out += [f"### `{kind}`", ""]
        for part in paragraphs(doc_of(model)):
            out += [part, ""]
        out += md_field_table(model, skip=("type",)) + [""]
        aliases = [i for i in layout.private.get(model, []) if isinstance(i, TypeAliasType)]
        models = [i for i in layout.private.get(model, []) if not isinstance(i, TypeAliasType)]
        if aliases:
            out += [md_alias_line(a) for a in aliases] + [""]
        for piece in models:
            out += md_piece(piece) + [""]
        out += ["```json", example_json(messages.example_of(model)), "```", ""]
    return out[:-1]


def md_pieces(layout: Layout) -> list[str]:
    out: list[str] = []
    aliases = [i for i in layout.shared if isinstance(i, TypeAliasType)]
    out += [md_alias_line(a) for a in aliases]
    for item in layout.shared:
        if not isinstance(item, TypeAliasType):
            out += [""] + md_piece(item, heading=f"**{ts_name(item)}**:")
    return out


def md_sections(layout: Layout) -> dict[str, str]:
    return {
        "envelope": "\n".join(md_envelope()),
        "commands": "\n".join(md_commands(layout)),
        "errors": "\n".join(md_errors()),
        "messages": "\n".join(md_messages(layout)),
        "pieces": "\n".join(md_pieces(layout)),
    }


MARKER = re.compile(r"(<!-- generated:(\w+)[^>]*-->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def render_md(current: str, layout: Layout) -> str:
    """``current`` with every generated section replaced; raises when a section's markers are missing."""
    sections = md_sections(layout)
    found = {m.group(2) for m in MARKER.finditer(current)}
    missing = sorted(set(sections) - found)
    if missing:
        raise SystemExit(
            f"{MD_TARGET.relative_to(ROOT)} lacks the markers of {', '.join(missing)}: add "
            + " and ".join(f"'<!-- generated:{name} -->' ... '<!-- /generated:{name} -->'" for name in missing)
        )
    unknown = sorted(found - set(sections))
    if unknown:
        raise SystemExit(f"{MD_TARGET.relative_to(ROOT)} has markers of unknown sections: {', '.join(unknown)}")
    return MARKER.sub(lambda m: f"{m.group(1)}\n{sections[m.group(2)]}\n\n{m.group(4)}", current)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def default_layout() -> Layout:
    return Layout.of(messages.SERVER_MESSAGES, messages.CLIENT_COMMANDS)


def outputs() -> dict[Path, str]:
    """Each generated file and the text it should have now."""
    layout = default_layout()
    return {TS_TARGET: render_ts(layout), MD_TARGET: render_md(MD_TARGET.read_text(), layout)}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{', '.join(stale)} stale vs server/messages.py: run `npm run gen-types` in frontend/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
