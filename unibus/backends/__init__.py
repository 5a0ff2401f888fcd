"""Built-in backends: in-memory and the embedded SQLite default."""
