"""podbgp's BGP-4 speaker: codec, sans-IO FSM, sessions, RIBs, decision, policy, export."""
