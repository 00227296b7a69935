"""Run AI workflows (one adapter per platform, see ``platforms``) as Airflow tasks."""

from __future__ import annotations

__version__ = "0.1.0"
