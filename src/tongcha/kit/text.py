"""Free text the hub stores or looks up.

PostgreSQL's text cannot hold a NUL character: a value with one fails the statement,
which the caller would see as a 500. Such input is refused at the edge instead, the
same on every database.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
