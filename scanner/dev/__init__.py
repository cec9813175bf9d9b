"""Local stand-ins for the services cendis-scan talks to (tests and demos only)."""
