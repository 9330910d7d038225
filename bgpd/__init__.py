"""podbgp's BGP-4 speaker: codec, sans-IO FSM, sessions, RIBs, decision process, REST API."""

__version__ = "0.1.0"
