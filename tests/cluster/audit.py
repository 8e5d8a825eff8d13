"""The API server's audit log, read back: which user wrote what.

The control plane's policy logs every write verb at Metadata level and nothing
else, so "the operator made zero writes in steady state" is a question this module
answers by reading the JSON-lines file, optionally only past a `mark()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

# audit.k8s.io/v1 Policy: Metadata for every write, nothing for reads.
POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": list(WRITE_VERBS)},
        {"level": "None"},
    ],
}


@dataclass(frozen=True)
class AuditEvent:
    """One completed request as the audit log recorded it."""

    verb: str
    user: str
    groups: tuple[str, ...]
    resource: str
    subresource: str
    namespace: str
    name: str
    api_group: str
    code: int
    uri: str
    user_agent: str
    #: The refusal's message (empty for successes).
    message: str = ""

    @property
    def rbac_denied(self) -> bool:
        """403 from authorization; not the NamespaceLifecycle admission refusing writes into
        a namespace being deleted (a race any controller emitting Events there can hit)."""
        return self.code == 403 and "because it is being terminated" not in self.message

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AuditEvent:
        user = raw.get("user", {})
        ref = raw.get("objectRef", {})
        return cls(
            verb=raw.get("verb", ""),
            user=user.get("username", ""),
            groups=tuple(user.get("groups", ())),
            resource=ref.get("resource", ""),
            subresource=ref.get("subresource", ""),
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            api_group=ref.get("apiGroup", ""),
            code=int(raw.get("responseStatus", {}).get("code", 0)),
            uri=raw.get("requestURI", ""),
            user_agent=raw.get("userAgent", ""),
            message=str(raw.get("responseStatus", {}).get("message", "")),
        )


class AuditLog:
    """Reads the audit log file written by the API server (`--audit-log-mode=blocking`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """A position in the log; pass it as `since` to see only later events."""
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, since: int = 0) -> list[AuditEvent]:
        """Every completed request logged after `since` (a `mark()`)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(since)
            data = f.read()
        # A line still being written has no newline yet; it belongs to a later read.
        complete = data[: data.rfind(b"\n") + 1]
        events = []
        for line in complete.splitlines():
            raw = json.loads(line)
            if raw.get("stage") == "ResponseComplete":
                events.append(AuditEvent.from_json(raw))
        return events

    def writes(
        self, user: str | None = None, *, since: int = 0, resource: str | None = None
    ) -> list[AuditEvent]:
        """Write requests, optionally only by `user` and only on `resource`."""
        return [
            e
            for e in self.events(since)
            if e.verb in WRITE_VERBS
            and (user is None or e.user == user)
            and (resource is None or e.resource == resource)
        ]
