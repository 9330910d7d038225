"""podbgp: the product around the speaker and the dataplane.

The CLI, the operations surface, the cluster control plane, the node agent, CNI and the lab.
"""

__version__ = "0.1.0"
