"""Config: supervisord.conf parsing and the typed model it produces."""
