"""Admin agent endpoints: register, list, read, drain, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..services import (
    create_agent,
    delete_agent,
    drain_agent,
    get_agent,
    list_agents,
    release_agent_leases,
)
from .convert import agent_out
from .deps import AdminAuth, Co
from .models import AgentCreate, AgentCreated, AgentList, AgentOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/agents", dependencies=[AdminAuth], tags=["admin"])


@router.post("", status_code=201)
async def register(body: AgentCreate, co: Co) -> AgentCreated:
    """Register an agent; its token is shown only in this answer."""
    doc, token = await create_agent(
        co, name=body.name, labels=body.labels, capacity=body.capacity, queues=body.queues
    )
    return AgentCreated(agent=agent_out(doc), token=token)


@router.get("")
async def list_all(co: Co) -> AgentList:
    """Every agent with its live lease count and last-seen time."""
    return AgentList(items=[agent_out(b, co.released.get(b["id"])) for b in await list_agents(co)])


@router.get("/{agent_id}")
async def read(agent_id: str, co: Co) -> AgentOut:
    """One agent."""
    return agent_out((await get_agent(co, agent_id)).body, co.released.get(agent_id))


@router.post("/{agent_id}/drain")
async def drain(agent_id: str, co: Co) -> AgentOut:
    """Give the agent no new claims."""
    return agent_out(await drain_agent(co, agent_id), co.released.get(agent_id))


@router.delete("/{agent_id}", status_code=204)
async def delete(agent_id: str, co: Co) -> Response:
    """Revoke the agent's token and release its leases to the queue."""
    body = await delete_agent(co, agent_id)
    await release_agent_leases(co, agent_id, dict(body.get("held") or {}))
    return Response(status_code=204)
