"""Several endpoints of one chain: rotate on failure, leave one that falls behind the others.

A node that is connected but stuck (or slow to import blocks) sends no error: it simply reports an old
head, and our feed would fall silent while the chain and the exchange go on. When more than one endpoint
is configured, the connector asks the others for their head now and then (each family its own way, e.g.
``connectors/evm/head_probe.py``) and moves to the best one when the current node is more than K blocks
behind it (:func:`lagging_behind`). Family-neutral: every chain family's feed uses it.
"""

from __future__ import annotations

from collections.abc import Sequence


class NodeLagging(RuntimeError):
    """The current node is too far behind another endpoint; the connector switches to that one."""


class EndpointPool:
    """The configured URLs and which one is in use."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one endpoint URL is needed")
        self.urls = list(dict.fromkeys(urls))
        self.index = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    @property
    def others(self) -> list[str]:
        return [u for i, u in enumerate(self.urls) if i != self.index]

    def rotate(self) -> str:
        """Move to the next endpoint (after a failure); with one endpoint this is the same one."""
        self.index = (self.index + 1) % len(self.urls)
        return self.current

    def switch_to(self, url: str) -> None:
        self.index = self.urls.index(url)


def lagging_behind(current_head: int, others: dict[str, int | None], threshold: int) -> tuple[str, int] | None:
    """The endpoint to move to (url, its head) when the current one is more than ``threshold`` behind it."""
    known = [(head, url) for url, head in others.items() if head is not None]
    if not known:
        return None
    best_head, best_url = max(known)
    return (best_url, best_head) if best_head - current_head > threshold else None
