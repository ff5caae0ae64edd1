"""Agent integrations: lifecycle hooks and their installers."""
