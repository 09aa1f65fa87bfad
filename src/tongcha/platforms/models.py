from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class Platform(Base):
    """An internet enterprise that asks the hub questions and, later, answers them."""

    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
