"""The HTTP application: one FastAPI app for carriers, platforms, citizens and the operator."""
