"""Detection benchmark: generate a scenario with ground truth, replay it, score the outages against the truth.

``generate`` writes the events and ``truth.json``; ``streams.detection.backtest`` replays them through the
detector; ``ideal`` computes what a detector that knows the true rates could do; ``score`` compares; ``run``
does all of it for an incident run and a quiet (false-alarm) run.
"""
