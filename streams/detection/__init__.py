"""Outage detection: pure Python, no Kafka or Faust, so worker, backtest and tests share it."""

from streams.detection.clock import Clock, ManualClock, WallClock
from streams.detection.detector import OutageDetector
from streams.detection.policy import DetectionPolicy
from streams.detection.rate import WithdrawalRate

__all__ = ["Clock", "DetectionPolicy", "ManualClock", "OutageDetector", "WallClock", "WithdrawalRate"]
