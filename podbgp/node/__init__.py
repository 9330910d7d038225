"""The node agent: node config, datastore sync, peering, and the wiring of bgpd to felix."""
