"""What the REST API's OpenAPI document says about errors: the body every error has, and each route's statuses.

Every error the REST API answers is JSON ``{"detail": "<what is wrong>. Fix: <what to do>"}``
(the handlers in ``server/app.py``); a request whose parameters or body do not match their
schema gets 422 with ``errors`` too, one ``{type, loc, msg}`` per problem. FastAPI's generated
document says a 422 ``detail`` is an array, and lists no other error at all, so this module:

- gives route decorators ``responses=errors(400, 404)``: the statuses the route itself answers,
  each with the ``ErrorBody`` shape and what the status means here;
- replaces FastAPI's 422 schema with the one sent (``ValidationErrorBody``) in every operation,
  and lists the statuses the security middleware may answer on any ``/api`` route.

``tests/api/test_edge_cases.py`` compares the statuses each route raises with the ones it documents.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from server.api.deps import get_session_id

# What each error status means in this API (the description OpenAPI shows for it).
STATUS_MEANINGS: dict[int, str] = {
    400: "Bad request: the input is wrong in a way the schema cannot say (a damaged upload, an unknown "
         "format); `detail` names the problem and the fix",
    401: "The server listens beyond this machine and needs its access token (dlplay --token)",
    403: "Refused: the Host or Origin header names a site this server does not answer to",
    404: "Not found: no such run, preset, dataset or upload in this session; `detail` says which",
    409: "Conflict: the thing exists but is not ready for this (a run without saved weights yet)",
    410: "Gone: the class has ended (server/classroom.py); `code` is class_ended",
    413: "Too large: the body or the requested data is over the server's limit; `detail` gives the limit",
    422: "The parameters or body do not match their schema; `errors` lists every problem",
    429: "Too many requests from this address; `detail` says when to try again",
    501: "Not available on this server: an optional package is missing; `detail` says what to install",
    503: "Busy: the server is at its limit for this kind of work; try again in a moment",
}

# Statuses the security middleware (server/security.py) may answer on any /api route, before the route runs.
MIDDLEWARE_STATUSES = (401, 403)

# A JSON body FastAPI cannot decode (not UTF-8, cut off, nested deeper than the decoder goes) is a 400
# before the route runs, on every route that takes one.
BODY_NOT_JSON = "The body is not JSON that can be read (not UTF-8, cut off, or nested too deep)"

# Statuses a dependency answers, documented on every route that depends on it: a request without a
# session gets one issued, and an address may be issued only so many an hour (server/sessions.py).
DEPENDENCY_STATUSES: dict[Callable[..., Any], tuple[int, ...]] = {get_session_id: (429,)}


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="what went wrong, naming the culprit, and the fix")
    code: str | None = Field(None, description="the classroom's refusals (/api/class, and 401 while a class is "
                             "open) also carry a code from server/messages.py ERROR_CODES, e.g. name_taken")


class ValidationErrorBody(BaseModel):
    """The body of a 422 answer."""

    detail: str = Field(description="the first problems as 'field: problem', joined by '; '")
    errors: list[dict[str, Any]] = Field(
        description="every problem: {type, loc, msg} for parameters or a body that do not match "
        "their schema; {layer, problem, fix, message, path} for an experiment document (POST /api/searches)")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route decorator: the error statuses the route answers, with the body each has.

    422 need not be listed: every route with parameters or a body documents it (``install``).
    """
    unknown = [status for status in statuses if status not in STATUS_MEANINGS]
    if unknown:
        raise ValueError(f"no meaning for HTTP status {unknown} in STATUS_MEANINGS; add one")
    return {status: {"model": ErrorBody, "description": STATUS_MEANINGS[status]} for status in statuses}


def _components(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON schemas of ``models`` (and the models they use) as OpenAPI components."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _dependency_calls(route: Any) -> list[Callable[..., Any]]:
    """Every dependency a route (a route context) calls, however deeply nested."""
    calls, stack = [], list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            calls.append(dependant.call)
        stack.extend(dependant.dependencies)
    return calls


def document_errors(schema: dict[str, Any], routes: list[Any] = ()) -> dict[str, Any]:
    """Rewrite a generated OpenAPI ``schema`` in place so its errors are the ones the app sends; returns it.

    ``routes``: the app's route contexts, for the statuses their dependencies answer.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_components(ErrorBody, ValidationErrorBody))
    validation = {"description": STATUS_MEANINGS[422],
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = validation
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault("400", {"description": BODY_NOT_JSON, **error})
            if path.startswith("/api/"):
                for status in MIDDLEWARE_STATUSES:
                    responses.setdefault(str(status), {"description": STATUS_MEANINGS[status], **error})
    for route in routes:
        statuses = sorted({s for call in _dependency_calls(route) for s in DEPENDENCY_STATUSES.get(call, ())})
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                for status in statuses:
                    operation["responses"].setdefault(str(status), {"description": STATUS_MEANINGS[status], **error})
    # FastAPI's own 422 shapes are no longer referenced by any operation.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and /docs, /openapi.json) document the errors the app really sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [ctx for ctx in iter_route_contexts(app.routes)
                      if isinstance(ctx.original_route, APIRoute) and ctx.include_in_schema]
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes, tags=app.openapi_tags, servers=app.servers,
            ), routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
