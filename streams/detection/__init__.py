"""Outage detection: pure Python, no Kafka or Faust, so worker, backtest and tests share it."""

from streams.detection.baseline import GapTail, SeasonalRate
from streams.detection.chains import ChainMonitor
from streams.detection.clock import Clock, ManualClock, WallClock
from streams.detection.correlation import IncidentCorrelator, load_exchange_metadata
from streams.detection.detector import OutageDetector
from streams.detection.policy import DetectionPolicy
from streams.detection.state import EXCHANGE_WIDE, Changes, ExchangeView

__all__ = [
    "EXCHANGE_WIDE",
    "ChainMonitor",
    "Changes",
    "Clock",
    "DetectionPolicy",
    "ExchangeView",
    "GapTail",
    "IncidentCorrelator",
    "ManualClock",
    "OutageDetector",
    "SeasonalRate",
    "WallClock",
    "load_exchange_metadata",
]
