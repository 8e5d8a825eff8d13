"""The LLMService API (ballast.dev/v1alpha1) as typed models: spec, status, rules, CRD.

Everything else in Ballast takes these models, never raw dicts: parse once with
:func:`parse_llmservice` at the boundary.
"""

from ballast.api.balancing import (
    DEFAULT_LOAD_FACTOR,
    DEFAULT_PREFIX_CHARS,
    LoadBalancing,
    LoadBalancingStrategy,
)
from ballast.api.cache import CACHE_MOUNT_PATH, CACHE_VOLUME, Cache, CacheAccessMode
from ballast.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    LLMService,
    ObjectMeta,
    Problem,
    SpecError,
    parse_llmservice,
)
from ballast.api.spec import (
    Backend,
    CircuitBreaker,
    Engine,
    Fallback,
    Health,
    LLMServiceSpec,
    Metric,
    RetryOn,
    Scaling,
    WhenAllUnhealthy,
)
from ballast.api.status import (
    BackendStatus,
    CacheState,
    CacheStatus,
    Condition,
    LLMServiceStatus,
    Phase,
)
from ballast.api.types import EnvVar, Resources, SecretKeyRef

__all__ = [
    "API_VERSION",
    "CACHE_MOUNT_PATH",
    "CACHE_VOLUME",
    "DEFAULT_LOAD_FACTOR",
    "DEFAULT_PREFIX_CHARS",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Backend",
    "BackendStatus",
    "Cache",
    "CacheAccessMode",
    "CacheState",
    "CacheStatus",
    "CircuitBreaker",
    "Condition",
    "Engine",
    "EnvVar",
    "Fallback",
    "Health",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "LoadBalancing",
    "LoadBalancingStrategy",
    "Metric",
    "ObjectMeta",
    "Phase",
    "Problem",
    "Resources",
    "RetryOn",
    "Scaling",
    "SecretKeyRef",
    "SpecError",
    "WhenAllUnhealthy",
    "parse_llmservice",
]
