"""felix: podbgp's kernel dataplane — plan, reconcile, tunnels, and the kernel adapter."""
