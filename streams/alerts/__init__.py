"""Outage alerts delivered outside Kafka (webhooks), for desks without a Kafka consumer."""

from streams.alerts.ledger import DeliveryLedger
from streams.alerts.webhook import WebhookNotifier, slack_payload

__all__ = ["DeliveryLedger", "WebhookNotifier", "slack_payload"]
