"""The number ledger: who held each number, and when."""
