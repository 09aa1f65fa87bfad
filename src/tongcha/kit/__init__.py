"""Shared pieces every feature uses: settings, database, errors, clock, digests."""
