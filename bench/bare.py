"""The ceiling: a bare FastAPI endpoint served by the same uvicorn the coordinator uses.

``uvicorn bench.bare:app`` — one POST route that parses a small JSON body and
answers a small JSON body, with no auth, no store and no logging.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

__all__ = ["app"]

app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # as the coordinator


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    body = await request.json()
    return {"ok": True, "n": len(body)}


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}
