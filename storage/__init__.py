"""Schema, migrations and every SQL statement of lykta."""
