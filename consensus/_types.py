"""Identifier types shared across the consensus package."""

from __future__ import annotations

from typing import NewType

__all__ = ["BlockId", "ChainId", "Height", "NodeId", "Round"]

NodeId = NewType("NodeId", int)
"""A replica's index in the committee, ``0 .. n-1``."""

Round = NewType("Round", int)
"""A consensus round (view); genesis is round 0."""

Height = NewType("Height", int)
"""A block's distance from genesis along its chain; genesis is height 0."""

BlockId = NewType("BlockId", bytes)
"""SHA-256 of a block's canonical header (32 bytes)."""

ChainId = NewType("ChainId", bytes)
"""Names one log; bound into every signature so messages cannot cross chains."""
