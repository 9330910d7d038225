"""rr: podbgp's dedicated route reflector daemon (RFC 4456)."""
