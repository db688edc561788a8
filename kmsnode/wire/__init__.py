"""Pure message types shared by the state machine, the network and the client."""
