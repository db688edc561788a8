"""Prime-order groups behind one interface (``Group``); see ``_base`` for the contract."""

from ._base import Group as Group
from ._base import Rng as Rng
from ._base import default_rng as default_rng
from .ristretto255 import RISTRETTO255 as RISTRETTO255
from .ristretto255 import Ristretto255 as Ristretto255

__all__ = ["RISTRETTO255", "Group", "Ristretto255", "Rng", "default_rng"]
