"""Imports every feature's models so that metadata (and Alembic) sees all tables."""

from tongcha.kit.credentials import Credential
from tongcha.kit.db import Base
from tongcha.kit.jobs import Job
from tongcha.ledger.models import (
    Carrier,
    LedgerEvent,
    LedgerNumber,
    LedgerRejection,
    LedgerRevision,
    ReassignmentBatch,
    ReassignmentCheck,
    Tenure,
)
from tongcha.platforms.models import Platform

__all__ = [
    "Base",
    "Carrier",
    "Credential",
    "Job",
    "LedgerEvent",
    "LedgerNumber",
    "LedgerRejection",
    "LedgerRevision",
    "Platform",
    "ReassignmentBatch",
    "ReassignmentCheck",
    "Tenure",
]
