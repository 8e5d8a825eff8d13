"""Replica counts the controller sets itself: scale to zero and cold standbys.

A backend that can be at 0 replicas (``scaling.minReplicas: 0``, or ``standby``)
has one writer of ``replicas`` at a time. While it is at 0 or coming up from 0 the
controller *pins* the Deployment's replicas (0, then :attr:`~ballast.api.Backend.up_replicas`)
and no HPA exists: an HPA never scales a target at 0, and two writers would fight.
Once a pod is ready the pin goes, the HPA is created with ``minReplicas`` at least 1,
and the controller stops writing replicas until it takes the backend back to 0.

:class:`Scale` is that decision for one service, made by the controller
(:mod:`ballast.controller.scaler`); rendering without one (``ballast render``, a
first reconcile) uses :meth:`Scale.initial`: every such backend at 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ballast.api import LLMService


@dataclass(frozen=True)
class Scale:
    """Pinned replica counts by backend name, and the standbys that are up or coming up."""

    pins: Mapping[str, int] = field(default_factory=dict)
    standby_up: frozenset[str] = frozenset()

    @classmethod
    def initial(cls, svc: LLMService) -> Scale:
        """Every backend that scales to zero, and every standby, at 0 replicas."""
        return cls({b.name: 0 for b in svc.spec.backends if b.holds})

    def pin(self, backend: str) -> int | None:
        """The replicas the controller sets for ``backend``; None: the spec's (or the HPA's)."""
        return self.pins.get(backend)
