"""pytest fixtures: mongo."""
