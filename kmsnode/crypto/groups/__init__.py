"""Prime-order groups behind one interface (``Group``); see ``_base`` for the contract."""

from ._base import Group as Group
from ._base import Rng as Rng
from ._base import default_rng as default_rng
from .ristretto255 import RISTRETTO255 as RISTRETTO255
from .ristretto255 import Ristretto255 as Ristretto255

__all__ = ["RISTRETTO255", "Group", "Ristretto255", "Rng", "default_rng"]
from .bls12_381 import BLS12_381_G1 as BLS12_381_G1
from .bls12_381 import BLS12_381_G2 as BLS12_381_G2
from .bls12_381 import BLS12381G1 as BLS12381G1
from .bls12_381 import BLS12381G2 as BLS12381G2
from .ed25519 import ED25519 as ED25519
from .ed25519 import Ed25519 as Ed25519

__all__ += ["BLS12_381_G1", "BLS12_381_G2", "BLS12381G1", "BLS12381G2", "ED25519", "Ed25519"]
