"""Ballast: a Kubernetes operator and gateway that keep LLM services upright."""

__version__ = "0.1.0"
