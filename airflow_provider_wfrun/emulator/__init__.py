"""
An offline stand-in for Dify, GPTBots and chenyu.cn that speaks their wire formats over real HTTP.

Tests and demos point the provider's hooks at :class:`EmulatorServer` instead of the paid services;
scenarios decide how runs behave and faults reproduce the network's bad days, reproducibly.
"""

from __future__ import annotations

from airflow_provider_wfrun.emulator.core import EmulatorState, Fault, LogLine, Run, Scenario
from airflow_provider_wfrun.emulator.server import EmulatorServer

__all__ = ["EmulatorServer", "EmulatorState", "Fault", "LogLine", "Run", "Scenario"]
