"""Small programs the tests run as agents."""
