"""Run Dify, GPTBots and chenyu.cn AI workflows as Airflow tasks."""

from __future__ import annotations

__version__ = "0.1.0"
