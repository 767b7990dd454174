"""User data the router needs: contacts, devices, preferences, templates (PostgreSQL, cached)."""
