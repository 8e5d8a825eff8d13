"""The base of API models with cross-field rules: each rule of its scope runs after validation.

The rules themselves (CEL and Python twin) are in :mod:`ballast.api.rules`; the CRD
generator attaches the CEL of a scope to the schema of the model that carries it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from ballast.api.rules import Rule, Scope, rules_for
from ballast.api.types import ApiModel


def _enforce(scope: Scope, model: ApiModel) -> None:
    data = model.to_json()
    for rule in rules_for(scope):
        if not rule.check(data):
            raise PydanticCustomError(
                "ballast_rule", rule.message, {"field": rule.field, "reason": rule.reason}
            )


class RuledModel(ApiModel):
    """An API model whose cross-field rules (``rules.RULES``) run after field validation."""

    rule_scope: ClassVar[Scope]

    @model_validator(mode="after")
    def _cross_field_rules(self) -> RuledModel:
        _enforce(self.rule_scope, self)
        return self

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        return rules_for(cls.rule_scope)
