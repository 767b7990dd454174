"""The HTTP API: ingestion for services, contacts and preferences, status, engagement tracking.

``api.app.create_app(settings)`` builds the aiohttp application; ``notify api run`` serves it.
"""
