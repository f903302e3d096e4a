"""Admin agent endpoints: register, list, read, drain, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..domain import AgentState
from ..services import (
    Coordinator,
    create_agent,
    delete_agent,
    drain_agent,
    get_agent,
    list_agents,
    settle_departed,
)
from .convert import agent_out
from .deps import AdminAuth, Co
from .models import AgentCreate, AgentCreated, AgentList, AgentOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/agents", dependencies=[AdminAuth], tags=["admin"])


def _out(co: Coordinator, agent: AgentState) -> AgentOut:
    # The ledger as this replica knows it: leases that ended here are not counted.
    return agent_out(agent, co.ledger.live_leases(agent))


@router.post("", status_code=201)
async def register(body: AgentCreate, co: Co) -> AgentCreated:
    """Register an agent; its token is shown only in this answer."""
    agent, token = await create_agent(
        co, name=body.name, labels=body.labels, capacity=body.capacity, queues=body.queues
    )
    return AgentCreated(agent=_out(co, agent), token=token)


@router.get("")
async def list_all(co: Co) -> AgentList:
    """Every agent with its live lease count and last-seen time."""
    return AgentList(items=[_out(co, agent) for agent in await list_agents(co)])


@router.get("/{agent_id}")
async def read(agent_id: str, co: Co) -> AgentOut:
    """One agent."""
    return _out(co, await get_agent(co, agent_id))


@router.post("/{agent_id}/drain")
async def drain(agent_id: str, co: Co) -> AgentOut:
    """Give the agent no new claims."""
    return _out(co, await drain_agent(co, agent_id))


@router.delete("/{agent_id}", status_code=204)
async def delete(agent_id: str, co: Co) -> Response:
    """Revoke the agent's token and release its leases to the queue."""
    await settle_departed(co, await delete_agent(co, agent_id))
    return Response(status_code=204)
