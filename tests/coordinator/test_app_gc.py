"""``serve`` tunes the collector: startup's heap frozen, young collections rarer."""

from __future__ import annotations

import gc

from fleet_coordinator import Settings, create_app
from fleet_coordinator.app import GC_THRESHOLDS


async def test_tune_gc_freezes_the_started_heap_and_raises_the_thresholds() -> None:
    settings = Settings(store_url="memory://", admin_token="t", reaper_enabled=False)
    defaults = gc.get_threshold()
    gc.unfreeze()
    try:
        plain = create_app(settings)
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0  # the default: tests and embedders keep their GC
            assert gc.get_threshold() == defaults
        app = create_app(settings, tune_gc=True)
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000  # the imported framework, at least
            assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*defaults)
