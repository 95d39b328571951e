"""The state database (a SQLite file or a PostgreSQL URL behind one interface) and the store the run keeps in it."""
