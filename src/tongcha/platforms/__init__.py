"""Internet platforms (enterprises and their apps)."""
