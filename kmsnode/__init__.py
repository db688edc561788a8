"""kmsnode: a Byzantine-fault-tolerant threshold key management service."""

__version__ = "0.1.0"
