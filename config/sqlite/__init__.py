"""Django's SQLite backend with the process's write transactions taken in turn (see base.py)."""
