"""podbgp-cni: the CNI plugin (CNI spec 1.0) and its process boundary."""
