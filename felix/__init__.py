"""felix: podbgp's node agent (kernel routes, tunnels, CNI)."""
