"""Which HTTP error statuses a route can answer, read from its source (for the OpenAPI comparison test).

A route answers an error by raising ``HTTPException(status_code=...)`` or returning
``JSONResponse(status_code=...)``, in its own body, in a helper it calls (``owned_run``,
``data_http_error``) or in a dependency (``Depends(get_session_id)``). The scan follows calls to
functions of ``server.api`` and ``server.sessions`` and resolves a status written as a number, as a
local name assigned numbers (``status = 413``), or as a call to a helper that returns numbers
(``_status(error)``). A status it cannot read (``error.status``) is reported as unresolved.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

# Functions whose bodies the scan follows: the API layer and the session issuer it calls.
FOLLOWED_MODULES = ("server.api", "server.sessions")
STATUS_CALLS = ("HTTPException", "JSONResponse")


@dataclass
class Statuses:
    known: set[int] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)  # "module.function: <expression>"


def _followed(obj: Any) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return isinstance(obj, FunctionType) and any(module == m or module.startswith(m + ".") for m in FOLLOWED_MODULES)


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _ints(node: ast.AST) -> set[int]:
    """Every integer constant in an expression that looks like an HTTP error status."""
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is int and 400 <= n.value < 600}


def _source_tree(func: Callable) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(func)))


def _resolve(expr: ast.AST, tree: ast.AST, module: ModuleType) -> set[int] | None:
    """The statuses ``expr`` (a status_code argument) can take, or None when the scan cannot tell."""
    if isinstance(expr, ast.Constant) and type(expr.value) is int:
        return {expr.value}
    if isinstance(expr, ast.Name):  # status = 413 / status = 404 ... in the same function
        values: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets):
                values |= _ints(node.value)
        return values or None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):  # _status(error): what the helper returns
        helper = getattr(module, expr.func.id, None)
        if isinstance(helper, FunctionType):
            values = set()
            for node in ast.walk(_source_tree(helper)):
                if isinstance(node, ast.Return) and node.value is not None:
                    values |= _ints(node.value)
            return values or None
    if isinstance(expr, ast.IfExp):
        body, orelse = _resolve(expr.body, tree, module), _resolve(expr.orelse, tree, module)
        return None if body is None or orelse is None else body | orelse
    return None


def function_statuses(func: Callable, seen: set[Callable] | None = None) -> Statuses:
    """The error statuses ``func`` and the followed functions it calls can answer."""
    seen = set() if seen is None else seen
    out = Statuses()
    if func in seen:
        return out
    seen.add(func)
    module = inspect.getmodule(func)
    tree = _source_tree(func)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in STATUS_CALLS:
            for keyword in node.keywords:
                if keyword.arg == "status_code":
                    values = _resolve(keyword.value, tree, module)
                    if values is None:
                        out.unresolved.append(f"{func.__module__}.{func.__qualname__}: {ast.unparse(keyword.value)}")
                    else:
                        out.known |= {v for v in values if v >= 400}
        elif isinstance(node.func, ast.Name):
            callee = getattr(module, node.func.id, None)
            if _followed(callee):
                inner = function_statuses(callee, seen)
                out.known |= inner.known
                out.unresolved += inner.unresolved
    return out


def api_routes(app: FastAPI) -> list[Any]:
    """Every documented API route of ``app``, with the prefix its router was included under.

    (FastAPI keeps included routers nested; a route context has the effective ``path_format``,
    ``methods``, ``endpoint`` and ``dependant``.)
    """
    return [ctx for ctx in iter_route_contexts(app.routes)
            if isinstance(ctx.original_route, APIRoute) and ctx.include_in_schema]


def route_statuses(route: Any) -> Statuses:
    """The error statuses a route (an ``api_routes`` entry) answers: its endpoint's and every dependency's."""
    out = Statuses()
    seen: set[Callable] = set()
    calls = [route.endpoint]
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            calls.append(dependant.call)
        stack.extend(dependant.dependencies)
    for call in calls:
        if _followed(call):
            inner = function_statuses(call, seen)
            out.known |= inner.known
            out.unresolved += inner.unresolved
    return out
