"""How improbable a silence is under the *true* swings of a bursty exchange, for the ideal detector.

The ideal detector of :mod:`.ideal` knows the true process but not its path: the seasonal rate, drift and
regime shifts of each exchange, and the law of its short-timescale swings (an Ornstein-Uhlenbeck log-level
with standard deviation ``sd`` and correlation time ``tau``, mean 1), but not where the swings stand now.
A gap that starts at a payout (so at a moment weighted by the rate) and lasts ``D`` seconds over which the
known rate would give ``U`` independent payouts then has probability

    P(gap > U) = E[ X(0) * exp(-(U / K) * sum_j X(j D / K)) ]

with the expectation over the OU path (``K`` steps of the gap). That probability is 1e-6 to 1e-8 where
alarms are decided: plain Monte Carlo would need billions of paths, so :func:`silence_nats` computes it by
Laplace's method in ``K`` dimensions (the log-integrand is concave in the log-levels, so Newton's method
finds its single mode), and the unit tests check it against Monte Carlo where Monte Carlo can reach.

Steps of the gap are averaged (the swing changes within a long gap), so the ideal is not slowed by
treating the rate factor as frozen for the whole gap.
"""

from __future__ import annotations

import math

import numpy as np

STEPS = 12


def _ou_precision(sd: float, tau_s: float, duration_s: float, steps: int) -> np.ndarray:
    """Inverse covariance of the OU log-level at ``steps`` points spread over ``duration_s`` (AR(1))."""
    a = math.exp(-duration_s / steps / tau_s) if tau_s > 0 else 0.0
    var = sd * sd
    precision = np.zeros((steps, steps))
    inner = (1.0 + a * a) / (var * (1.0 - a * a))
    edge = 1.0 / (var * (1.0 - a * a))
    off = -a / (var * (1.0 - a * a))
    for i in range(steps):
        precision[i, i] = inner if 0 < i < steps - 1 else edge
        if i + 1 < steps:
            precision[i, i + 1] = precision[i + 1, i] = off
    if steps == 1:
        precision[0, 0] = 1.0 / var
    return precision


def silence_nats(units: float, sd: float, tau_s: float, duration_s: float, steps: int = STEPS) -> float:
    """``-ln P(gap > units)`` for a gap that started at a payout, under mean-1 OU log-normal swings."""
    if units <= 0:
        return 0.0
    if sd <= 0:
        return units
    mu = -0.5 * sd * sd
    q = _ou_precision(sd, tau_s, duration_s, steps)
    weight = units / steps
    x = np.full(steps, mu)
    first = np.zeros(steps)
    first[0] = 1.0  # the size bias: the gap starts at a payout, more likely when the rate is high
    for _ in range(100):
        ex = np.exp(x)
        grad = weight * ex - first + q @ (x - mu)
        hess = q + np.diag(weight * ex)
        step = np.linalg.solve(hess, grad)
        step = np.clip(step, -2.0, 2.0)
        x = x - step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    ex = np.exp(x)
    d = x - mu
    f = float(weight * ex.sum() - x[0] + 0.5 * d @ q @ d)
    hess = q + np.diag(weight * ex)
    # Laplace: the Gaussian normaliser det(Q)^(1/2) against the mode's curvature det(H)^(1/2)
    _, logdet_h = np.linalg.slogdet(hess)
    _, logdet_q = np.linalg.slogdet(q)
    return f + 0.5 * (float(logdet_h) - float(logdet_q))


def threshold_units(nats: float, sd: float, tau_s: float, rate_per_s: float) -> float:
    """The gap (in known-rate payouts) whose :func:`silence_nats` reaches ``nats``, by bisection.

    ``rate_per_s`` (independent payouts per second at the known rate) turns units into the gap's length.
    """
    if sd <= 0 or rate_per_s <= 0:
        return nats
    lo, hi = nats, nats
    while silence_nats(hi, sd, tau_s, hi / rate_per_s) < nats:
        hi *= 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if silence_nats(mid, sd, tau_s, mid / rate_per_s) < nats:
            lo = mid
        else:
            hi = mid
    return hi
