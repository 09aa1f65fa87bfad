"""What carriers and platforms embed to talk to a Tongcha hub."""
