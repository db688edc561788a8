"""consensus: a HotStuff-style (2-chain, DiemBFT v4 / Jolteon) BFT log with an opaque payload."""
