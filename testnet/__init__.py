"""testnet: launch and control a local n-node network."""
