"""kopf's peering rule as the health loop applies it: lead unless a live peer ranks as high."""

from __future__ import annotations

import datetime

from ballast.controller.peering import leads

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: float = 0, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_alone_or_highest_leads() -> None:
    assert leads({}, "me", 5, NOW)
    assert leads({"me": peer(5), "other": peer(4)}, "me", 5, NOW)


def test_a_live_higher_or_equal_peer_takes_the_lead() -> None:
    assert not leads({"me": peer(5), "other": peer(6)}, "me", 5, NOW)
    assert not leads({"me": peer(5), "other": peer(5)}, "me", 5, NOW)  # kopf pauses both


def test_dead_peers_do_not_count() -> None:
    assert leads({"other": peer(9, seconds_ago=61)}, "me", 5, NOW)
    assert leads({"other": "garbage"}, "me", 5, NOW)
