"""podbgp lab: the docker-compose topology in network namespaces on one machine."""
