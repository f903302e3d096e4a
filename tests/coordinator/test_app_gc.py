"""``serve`` freezes what startup left alive, so full collections stay short."""

from __future__ import annotations

import gc

from fleet_coordinator import Settings, create_app


async def test_freeze_gc_moves_the_started_heap_out_of_collections() -> None:
    settings = Settings(store_url="memory://", admin_token="t", reaper_enabled=False)
    gc.unfreeze()
    try:
        plain = create_app(settings)
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0  # the default: tests and embedders keep their GC
        app = create_app(settings, freeze_gc=True)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000  # the imported framework, at least
    finally:
        gc.unfreeze()
