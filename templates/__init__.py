"""Jinja2 templates (email and creative copy) shipped with the package."""
