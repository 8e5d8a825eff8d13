"""Ballast: a Kubernetes operator and gateway that keep LLM services upright."""

__version__ = "0.1.0"

#: Ballast's own container image (operator, gateway and model cache loader) at this version.
DEFAULT_IMAGE = f"ghcr.io/ballast-dev/ballast:{__version__}"
