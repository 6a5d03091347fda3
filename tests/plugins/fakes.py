"""pytest fixtures: fakes."""
