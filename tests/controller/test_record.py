"""The per-service record: one incarnation per uid, and our own writes overlaying the index."""

from __future__ import annotations

import time

import pytest

from ballast.controller import record as record_module
from ballast.controller.children import Child
from ballast.controller.record import Records, ServiceRecord

OWNER = ("ai", "chat")
DEP = ("Deployment", "chat-primary")


def test_a_new_uid_starts_a_fresh_record_and_drop_forgets_everything() -> None:
    records = Records()
    first = records.of(OWNER, "uid-1")
    first.applied = 3
    assert records.of(OWNER, "uid-1") is first
    second = records.of(OWNER, "uid-2")  # deleted and created again under the same name
    assert second is not first
    assert second.applied is None
    records.drop(OWNER)
    assert records.get(OWNER) is None
    assert len(records) == 0


def test_a_write_counts_until_the_index_shows_it() -> None:
    record = ServiceRecord(OWNER, "uid-1")
    stale = {DEP: Child(*DEP, "old", "uid-1", replicas=2, ready_replicas=1)}
    record.note(DEP, "new", rv="42")
    seen = record.overlay(stale)
    assert seen[DEP].hash == "new"
    assert seen[DEP].ready_replicas == 1  # counts still come from the index
    assert record.echo(DEP, "42")
    caught_up = {DEP: Child(*DEP, "new", "uid-1")}
    assert record.overlay(caught_up)[DEP].hash == "new"
    assert record.writes == {}  # forgotten once the index caught up


def test_a_delete_hides_the_child_and_a_create_shows_it_before_the_watch() -> None:
    record = ServiceRecord(OWNER, "uid-1")
    record.note(DEP, None)
    record.note(("Service", "chat-primary"), "h")
    seen = record.overlay({DEP: Child(*DEP, "h", "uid-1")})
    assert DEP not in seen
    assert seen["Service", "chat-primary"].owner_uid == "uid-1"


def test_an_unconfirmed_write_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    record = ServiceRecord(OWNER, "uid-1")
    record.note(DEP, "new")
    later = time.monotonic() + record_module.RECENT_SECONDS + 1
    monkeypatch.setattr(record_module.time, "monotonic", lambda: later)
    assert record.overlay({DEP: Child(*DEP, "old", "uid-1")})[DEP].hash == "old"


def test_the_status_we_wrote_counts_as_stored_until_the_watch_brings_it() -> None:
    record = ServiceRecord(OWNER, "uid-1")
    record.status_written = ({"phase": "Ready"}, time.monotonic())
    assert record.stored_status({"phase": "Progressing"}) == {"phase": "Ready"}
    assert record.stored_status({"phase": "Ready"}) == {"phase": "Ready"}
    assert record.status_written is None
