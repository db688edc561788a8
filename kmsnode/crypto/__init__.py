"""Pure, synchronous cryptography: groups, Shamir/Feldman, DLEQ, TDH2, ElGamal sums, sealing.

Nothing here does I/O or reads a clock; randomness is passed in (``rng``) where it is used.
"""
