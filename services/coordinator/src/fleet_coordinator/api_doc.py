"""``docs/api.md``: the HTTP API reference rendered from the app's OpenAPI schema.

The schema is the product's contract as the code states it (STYLE.md 8); this
module turns it into Markdown with a stable order, so a test can regenerate the
page and fail when the committed one is stale. Only the JSON-schema features the
app's pydantic models use are rendered; anything else shows as ``any``.
"""

from __future__ import annotations

import json
from typing import Any

from .settings import Settings

__all__ = ["api_markdown", "openapi_schema"]

_METHODS = ("get", "post", "put", "patch", "delete")
_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("maxProperties", "keys ≤ {}"),
    ("pattern", "matches `{}`"),
)
_AUTH = {
    "admin": "admin token",
    "agent": "agent token",
    "operations": "none",
}


def openapi_schema() -> dict[str, Any]:
    """The app's OpenAPI schema under default settings, whatever ``FLEET_*`` says."""
    from .app import create_app

    # Explicit arguments outrank the environment in pydantic-settings, so the
    # page never depends on the machine that generated it.
    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    settings = Settings(**{**defaults, "store_url": "memory://", "admin_token": "unused"})
    return create_app(settings).openapi()


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if not isinstance(value, str) else value


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any]) -> str:
    """A short type expression: ``JobOut``, ``string | null``, ``array of string``, …"""
    if "$ref" in schema:
        return f"[`{_ref_name(schema['$ref'])}`](#{_ref_name(schema['$ref']).lower()})"
    if "anyOf" in schema:
        return " \\| ".join(type_of(s) for s in schema["anyOf"])
    if "oneOf" in schema:  # a union chosen by a field (ReportItem by its action)
        chosen = " \\| ".join(type_of(s) for s in schema["oneOf"])
        tag = schema.get("discriminator", {}).get("propertyName")
        return f"({chosen}, by `{tag}`)" if tag else chosen
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"object of {type_of(values)}"
        return "object"
    if isinstance(kind, str):
        return f"{kind} ({schema['format']})" if "format" in schema else kind
    return "any"


def constraints_of(schema: dict[str, Any]) -> str:
    """The validation bounds of a schema and of the non-null branches of its ``anyOf``."""
    parts: list[str] = []
    for branch in [schema, *schema.get("anyOf", [])]:
        for key, template in _CONSTRAINTS:
            if key in branch:
                parts.append(template.format(_num(branch[key])))
        names = branch.get("propertyNames", {})
        if "maxLength" in names:
            parts.append(f"key length ≤ {_num(names['maxLength'])}")
        item = branch.get("items") or branch.get("additionalProperties")
        if isinstance(item, dict):
            inner = constraints_of(item)
            if inner:
                parts.append(f"each: {inner}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _describe(text: str) -> str:
    # Docstrings use reST double backticks; Markdown wants single ones.
    return text.replace("``", "`").strip()


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_describe(schema["description"]), ""]
    if "enum" in schema:
        lines += ["One of: " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".", ""]
        return lines
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    lines += [
        "| field | type | required | default | constraints | description |",
        "|---|---|---|---|---|---|",
    ]
    for field, prop in properties.items():
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        lines.append(
            f"| `{field}` | {type_of(prop)} | {'yes' if field in required else ''} | {default} "
            f"| {_cell(constraints_of(prop))} | {_cell(_describe(prop.get('description', '')))} |"
        )
    if schema.get("additionalProperties") is False:
        lines += ["", "Unknown fields are rejected (422)."]
    return [*lines, ""]


def _operation_section(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    tag = (op.get("tags") or ["operations"])[0]
    lines += [_describe(op.get("description") or op.get("summary", "")), ""]
    lines += [f"Auth: {_AUTH.get(tag, tag)}.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | default | constraints |"]
        lines += ["|---|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            default = f"`{json.dumps(schema['default'])}`" if "default" in schema else ""
            lines.append(
                f"| `{p['name']}` | {p['in']} | {type_of(schema)} "
                f"| {'yes' if p.get('required') else ''} | {default} "
                f"| {_cell(constraints_of(schema))} |"
            )
        lines.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        lines += [f"Body: {type_of(body.get('schema', {}))}.", ""]
    success: list[str] = []
    errors: list[str] = []
    for status in sorted(op.get("responses", {})):
        answer = op["responses"][status]
        content = answer.get("content", {}).get("application/json", {}).get("schema")
        described = type_of(content) if content else ""
        if described == "any":
            described = ""
        if status.startswith("2"):
            text = f"{status} {described}".strip()
            success.append(text if status != "200" or described else f"{status} (no JSON body)")
        else:
            errors.append(status)
    lines += [f"Answers: {'; '.join(success)}."]
    if errors:
        lines += [f"Errors: {', '.join(errors)} (each an [`ErrorOut`](#errorout))."]
    return [*lines, ""]


def api_markdown(schema: dict[str, Any] | None = None) -> str:
    """The whole page: an index of endpoints, each endpoint, then every schema."""
    schema = schema if schema is not None else openapi_schema()
    info = schema["info"]
    operations = [
        (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in _METHODS
    ]
    lines = [
        f"# {info['title']} HTTP API (version {info['version']})",
        "",
        "<!-- Generated from the app's OpenAPI schema by `make generate`"
        " (python -m fleet_coordinator.generate). Do not edit:"
        " tests/infra/test_generated.py fails when this page is stale. -->",
        "",
        _describe(info.get("description", "")),
        "",
        "All bodies are JSON, sent as `Content-Type: application/json` (or another `+json`",
        "type) and uncompressed: a body under any other type or none (`curl -d` labels it a",
        "form), or with a `Content-Encoding` other than `identity`, is refused unread, 415",
        "`unsupported_media_type`; under two `Content-Type` headers, 400. Auth is",
        "`Authorization: Bearer <token>` (the admin token or an agent token from",
        "`POST /v1/agents`), in one `Authorization` header: a request with several is 400",
        "`bad_request`, whatever they hold. Every error has the shape",
        '`{"error": {"code": "...", "message": "...", "details": {...}}}`. The running',
        "service serves the same schema at `/openapi.json` (no explorer page: FastAPI's",
        "load their scripts from a CDN onto the console's origin).",
        "",
        "Numbers and flags in bodies are taken as JSON types only: an integer field refuses",
        '`"5"`, `true` and `5.0`, a duration refuses `"5"` (a JSON integer is a number),',
        'a flag refuses `"no"` and `0`, and `run_after` takes only an ISO-8601 string (not',
        "Unix seconds); each is a 422 `validation_error`, never coerced. An integer in a",
        "query string (`limit`) is decimal digits only: `5_0`, `+5`, `5.0` or ` 5` is a 422",
        "naming the parameter in `details.errors[].loc`, as `abc` is, never read as a number.",
        "A body holding `NaN`, `Infinity` or `-Infinity` (not JSON, though Python's parser",
        "reads them) is 400 `bad_request`, as is an integer of over 4300 digits; both name",
        "the value's place in `details.errors[].loc`.",
        "",
        "## Endpoints",
        "",
        "| method | path | auth | what |",
        "|---|---|---|---|",
    ]
    for method, path, op in operations:
        tag = (op.get("tags") or ["operations"])[0]
        anchor = f"{method}-{path}".lower()
        anchor = "".join(c for c in anchor if c.isalnum() or c in "-_ ").replace(" ", "-")
        summary = _describe(op.get("description") or op.get("summary", "")).split("\n")[0]
        lines.append(f"| {method.upper()} | [`{path}`](#{anchor}) | {tag} | {_cell(summary)} |")
    lines += ["", "## Operations", ""]
    for method, path, op in operations:
        lines += _operation_section(method, path, op)
    lines += ["## Schemas", ""]
    for name in sorted(schema.get("components", {}).get("schemas", {})):
        lines += _schema_section(name, schema["components"]["schemas"][name])
    return "\n".join(lines).rstrip() + "\n"
