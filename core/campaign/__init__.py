"""The campaign file: its schema, its loader (errors point at the line), source and e-mail settings, credentials."""
