"""The LLMService object (metadata + spec + status) and turning raw input into it.

:func:`parse_llmservice` is the one door from plain JSON (a kopf body, a YAML
document) into the typed model. It never raises pydantic's errors at callers:
bad input becomes a :class:`SpecError` carrying one :class:`Problem` per
offending field, with the field path written as users see it in YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ballast.api.spec import LLMServiceSpec
from ballast.api.status import LLMServiceStatus

GROUP: Final = "ballast.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "LLMService"
PLURAL: Final = "llmservices"
SINGULAR: Final = "llmservice"
SHORT_NAMES: Final = ("llms",)


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta Ballast reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LLMService(BaseModel):
    """A whole LLMService object."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: ObjectMeta
    spec: LLMServiceSpec
    status: LLMServiceStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def served_model_name(self) -> str:
        """What clients send as ``model``: the spec's value or the object's name."""
        return self.spec.served_model_name or self.metadata.name


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an object, at a field path such as ``spec.backends[0].url``."""

    path: str
    message: str
    reason: str = "Invalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """An object the API rejects; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @property
    def reason(self) -> str:
        """A condition reason for the first problem."""
        return self.problems[0].reason if self.problems else "InvalidSpec"


def format_path(loc: tuple[int | str, ...]) -> str:
    """Turn pydantic's location tuple into ``spec.backends[0].url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from(error: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with the rule's field appended when it has one."""
    problems = []
    for err in error.errors(include_url=False):
        ctx = err.get("ctx") or {}
        path = format_path(tuple(err["loc"]))
        if err["type"] == "ballast_rule":
            path += str(ctx.get("field", ""))
            reason = str(ctx.get("reason", "Invalid"))
        else:
            reason = "SchemaViolation"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        problems.append(Problem(path=path, message=message, reason=reason))
    return problems


def parse_llmservice(obj: Mapping[str, Any], *, status: bool = True) -> LLMService:
    """Parse a raw LLMService object into the typed model or raise :class:`SpecError`.

    ``status=False`` leaves the stored status out of the model (``svc.status`` is None):
    the controller's index keeps it as JSON and parses it only when it needs it.
    """
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise SpecError([Problem("metadata.name", "required field is missing", "MissingName")])
    if "spec" not in obj:
        raise SpecError([Problem("spec", "required field is missing", "MissingSpec")])
    try:
        svc = LLMService.model_validate({"metadata": metadata, "spec": obj["spec"]})
    except ValidationError as e:
        raise SpecError(problems_from(e)) from None
    if not status:
        return svc
    return svc.model_copy(update={"status": _lenient_status(obj.get("status"))})


def _lenient_status(raw: Any) -> LLMServiceStatus | None:
    """The stored status, or None when it is absent or unreadable (the controller rewrites it)."""
    if not raw:
        return None
    try:
        return LLMServiceStatus.model_validate(raw)
    except ValidationError:
        return None
