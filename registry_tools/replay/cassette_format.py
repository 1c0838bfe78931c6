"""The cassette file format: a JSON document of sorted interactions, checked when read.

vcrpy hands the serializer `{"version", "interactions": [{"request", "response"}], "metadata"}`
with bodies as text; the file keeps request and response bodies as JSON values when they are
JSON (readable, diffable), else as `text` or `base64`. Interactions are sorted by request
(method, URI, body), so re-recording an unchanged registry gives the same bytes.

A hand-edited file is checked before vcrpy sees it: every interaction must have a string
method and URI, an integer status, a string reason, string headers and one body form; anything
else is a `ValueError` naming the interaction, which the persister reports as a one-line
error (an interaction status `"200"` used to surface as a TypeError half-way through a run).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson
import vcr.serialize

from registry_tools import files

FORMAT = "registry-tools-cassette/1"
BODY_FORMS = ("json", "text", "base64")


def canonical_body(body: bytes | str | None) -> bytes | None:
    """A request body as the index compares it: JSON re-encoded with sorted keys (so key
    order and spacing do not matter), anything else as its bytes."""
    if body is None or body in (b"", ""):
        return None
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return raw


class JsonSerializer:
    """vcrpy serializer (registered as `registry-json`)."""

    @staticmethod
    def serialize(data: dict[str, Any]) -> str:
        interactions = sorted(
            (
                {
                    "request": _encode_request(i["request"]),
                    "response": _encode_response(i["response"]),
                }
                for i in data["interactions"]
            ),
            key=lambda i: (
                i["request"]["uri"],
                i["request"]["method"],
                orjson.dumps(i["request"].get("body"), option=orjson.OPT_SORT_KEYS),
            ),
        )
        header = {"format": FORMAT, "metadata": data.get("metadata") or {}}
        return files.dumps({"header": header, "interactions": interactions}).decode()

    @staticmethod
    def deserialize(text: str | bytes) -> dict[str, Any]:
        document = orjson.loads(text)
        header = document.get("header") if isinstance(document, dict) else None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"not a registry-tools cassette (no {FORMAT!r} header)")
        if not isinstance(header.get("metadata", {}), dict):
            raise ValueError("its header's 'metadata' is not an object")
        interactions = document.get("interactions")
        if not isinstance(interactions, list):
            raise ValueError("no 'interactions' list")
        for index, interaction in enumerate(interactions):
            problem = _interaction_problem(interaction)
            if problem:
                raise ValueError(f"interaction {index}: {problem}")
        return {
            "version": vcr.serialize.CASSETTE_FORMAT_VERSION,
            "interactions": [
                {
                    "request": _decode_request(i["request"]),
                    "response": _decode_response(i["response"]),
                }
                for i in interactions
            ],
            "metadata": header.get("metadata") or {},
        }


def _interaction_problem(interaction: Any) -> str | None:
    if not isinstance(interaction, dict):
        return "not an object"
    request, response = interaction.get("request"), interaction.get("response")
    if not isinstance(request, dict) or not isinstance(response, dict):
        return "needs a 'request' and a 'response' object"
    for key in ("method", "uri"):
        if not isinstance(request.get(key), str) or not request[key]:
            return f"request {key!r} is {request.get(key)!r}, expected a string"
    body = request.get("body")
    if body is not None and not isinstance(body, str | dict):
        return "request 'body' must be a string or a {'json': ...} object"
    status = response.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return f"response 'status' is {status!r}, expected an integer HTTP status"
    if not isinstance(response.get("reason"), str):
        return f"response 'reason' is {response.get('reason')!r}, expected a string"
    headers = response.get("headers")
    if not isinstance(headers, dict) or not all(
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        for value in headers.values()
    ):
        return "response 'headers' must map names to strings"
    forms = [form for form in BODY_FORMS if form in response]
    if len(forms) > 1:
        return f"response has more than one body ({', '.join(forms)})"
    if forms and forms[0] != "json" and not isinstance(response[forms[0]], str):
        return f"response {forms[0]!r} body is not a string"
    if forms == ["base64"]:
        try:
            base64.b64decode(response["base64"], validate=True)
        except ValueError:
            return "response 'base64' body is not base64"
    return None


def _header_value(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def _encode_request(request: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {"method": request["method"], "uri": request["uri"]}
    body = request.get("body")
    if body is not None and body not in (b"", ""):
        try:
            encoded["body"] = {"json": orjson.loads(body)}
        except orjson.JSONDecodeError:
            encoded["body"] = body if isinstance(body, str) else body.decode("utf-8", "replace")
    return encoded


def _decode_request(encoded: dict[str, Any]) -> dict[str, Any]:
    body = encoded.get("body")
    if isinstance(body, dict):
        body = orjson.dumps(body.get("json"), option=orjson.OPT_SORT_KEYS)
    return {"method": encoded["method"], "uri": encoded["uri"], "body": body, "headers": {}}


def _encode_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = {
        name: values[0] if len(values) == 1 else values
        for name, values in response["headers"].items()
    }
    encoded = {
        "status": response["status"]["code"],
        "reason": response["status"]["message"],
        "headers": headers,
    }
    if "string" in response["body"]:
        encoded.update(_encode_body(response["body"]["string"], headers))
    return encoded


def _encode_body(body: str | bytes, headers: Mapping[str, Any]) -> dict[str, Any]:
    """`json` (a JSON value) when the answer says it is JSON and parses, else `text`/`base64`."""
    content_type = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" in content_type:
        try:
            return {"json": orjson.loads(body)}
        except orjson.JSONDecodeError:
            pass  # a truncated answer: keep it verbatim
    if isinstance(body, bytes):
        return {"base64": base64.b64encode(body).decode()}
    return {"text": body}


def _decode_response(encoded: dict[str, Any]) -> dict[str, Any]:
    if "json" in encoded:
        body = {"string": orjson.dumps(encoded["json"])}
    elif "base64" in encoded:
        body = {"string": base64.b64decode(encoded["base64"])}
    elif "text" in encoded:
        body = {"string": encoded["text"]}
    else:
        body = {}
    return {
        "status": {"code": encoded["status"], "message": encoded["reason"]},
        "headers": encoded["headers"],
        "body": body,
    }
