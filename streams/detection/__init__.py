"""Outage detection: pure Python, no Kafka or Faust, so worker, backtest and tests share it."""

from streams.detection.baseline import GapTail, SeasonalRate
from streams.detection.chains import ChainMonitor
from streams.detection.clock import Clock, ManualClock, WallClock
from streams.detection.correlation import IncidentCorrelator, load_exchange_metadata
from streams.detection.detector import EXCHANGE_WIDE, OutageDetector
from streams.detection.policy import DetectionPolicy

__all__ = [
    "EXCHANGE_WIDE",
    "ChainMonitor",
    "Clock",
    "DetectionPolicy",
    "GapTail",
    "IncidentCorrelator",
    "ManualClock",
    "OutageDetector",
    "SeasonalRate",
    "WallClock",
    "load_exchange_metadata",
]
