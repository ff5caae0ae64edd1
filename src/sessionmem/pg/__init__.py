"""The PostgreSQL engine (an optional extra: `pip install 'sessionmem[postgres]'`)."""
