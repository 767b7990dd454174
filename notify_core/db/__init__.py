"""PostgreSQL access: connections, versioned migrations."""
