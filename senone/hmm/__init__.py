"""HMM side of the acoustic model: topology, context dependency (tree) and transition model."""

from senone.hmm.model import GmmHmm, load_topology, phones_from_topology

__all__ = ["GmmHmm", "load_topology", "phones_from_topology"]
