"""felix's kernel adapter: the one pyroute2 importer and the bulk rtnetlink encoder."""
