"""pytest fixtures: dovecot."""
