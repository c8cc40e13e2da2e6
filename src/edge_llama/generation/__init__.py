"""Host-side generation: one runner for the torch model and every exported artifact."""

from .backends import GraphBackend, GraphCall, GraphResult, TorchGraphBackend
from .rope import RopeTable
from .runner import EdgeRunner, KVWindow, plan_chunks

__all__ = [
    "EdgeRunner",
    "GraphBackend",
    "GraphCall",
    "GraphResult",
    "KVWindow",
    "RopeTable",
    "TorchGraphBackend",
    "plan_chunks",
]
