"""The cluster control plane: resources, selectors, block IPAM and the datastore."""
