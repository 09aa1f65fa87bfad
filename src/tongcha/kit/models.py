"""Imports every feature's models so that metadata (and Alembic) sees all tables."""

from tongcha.identity.models import CitizenSession, Verification
from tongcha.kit.credentials import Credential
from tongcha.kit.db import Base
from tongcha.kit.jobs import Job
from tongcha.kit.keys import HubKey
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
from tongcha.platforms.models import Platform, PlatformApp, PlatformKey, PlatformTask, SeenToken
from tongcha.requests.models import Request

__all__ = [
    "Base",
    "Carrier",
    "CitizenSession",
    "Credential",
    "HubKey",
    "Job",
    "LedgerEvent",
    "LedgerNumber",
    "LedgerRejection",
    "LedgerRevision",
    "Platform",
    "PlatformApp",
    "PlatformKey",
    "PlatformTask",
    "ReassignmentBatch",
    "ReassignmentCheck",
    "Request",
    "SeenToken",
    "Tenure",
    "Verification",
]
