"""Outage alerts delivered outside Kafka (chat webhooks, PagerDuty, Alertmanager), for desks without a Kafka
consumer."""

from streams.alerts.channels import AlertChannel, AlertmanagerApi, PagerDutyEvents, SlackHook
from streams.alerts.ledger import DeliveryLedger
from streams.alerts.notifier import AlertNotifier

__all__ = ["AlertChannel", "AlertNotifier", "AlertmanagerApi", "DeliveryLedger", "PagerDutyEvents", "SlackHook"]
