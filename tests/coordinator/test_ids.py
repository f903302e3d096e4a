"""Job ids and shards: ``new_id``, ``new_ids`` for a batch, and ``shard_of``."""

from __future__ import annotations

import re
import zlib

import pytest
from fleet_coordinator.store import new_id, new_ids, shard_of

_ID = re.compile(r"[0-9a-f]{32}")


def test_a_batch_of_ids_is_distinct_well_formed_and_in_time_order() -> None:
    before = new_id()
    ids = new_ids(1000)
    after = new_id()
    assert len(ids) == 1000
    assert all(_ID.fullmatch(job_id) for job_id in ids)
    assert len(set(ids)) == 1000
    # The millisecond first, one clock read: between the ids made before and after.
    stamps = {job_id[:12] for job_id in ids}
    assert len(stamps) == 1
    assert before[:12] <= stamps.pop() <= after[:12]


def test_each_id_of_a_batch_has_its_own_80_random_bits() -> None:
    # Random, not a counter or one draw repeated: over 1,000 ids every one of the 20
    # hex digits of the tail takes each of its 16 values (a random tail misses one
    # with a probability of ~1e-26).
    tails = [job_id[12:] for job_id in new_ids(1000)]
    assert all(len(tail) == 20 for tail in tails)
    for place in range(20):
        assert len({tail[place] for tail in tails}) == 16, place


def test_an_empty_batch_has_no_ids() -> None:
    assert new_ids(0) == []


@pytest.mark.parametrize("shards", [1, 2, 16, 99, 100, 101, 255, 256])
def test_the_shard_is_the_crc32_of_the_id_modulo_the_shards(shards: int) -> None:
    for job_id in [*new_ids(300), "k" + "0" * 32, "x"]:
        assert shard_of(job_id, shards) == f"s{zlib.crc32(job_id.encode()) % shards:02d}"


def test_the_shard_of_an_id_is_stable_across_versions() -> None:
    # Stored jobs live in the partition their id hashed to when written.
    assert shard_of("k0134c8ec4515277b7b80ffa03135e5b8", 16) == "s11"
    assert shard_of("01a25272e12b87c1a206b713e5e65fbe", 16) == "s00"
    assert shard_of("01a25272e12b87c1a206b713e5e65fbe", 256) == "s208"
    assert shard_of("abc", 200) == "s178"
    assert shard_of("abc", 7) == "s05"
