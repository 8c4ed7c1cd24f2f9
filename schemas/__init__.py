"""The haltwatch event contract: records, their codec, JSON Schema, topic names and ClickHouse DDL."""

from schemas.codec import SchemaError, decode, decode_as, encode, from_dict
from schemas.records import (
    NATIVE_ASSET,
    NATIVE_LOG_INDEX,
    SCHEMA_VERSION,
    BlockTransfers,
    ChainHead,
    ChainState,
    ChainStatus,
    CorrelatedIncident,
    DeadLetter,
    Direction,
    FeedHeartbeat,
    LabelSuggestion,
    OutageEvent,
    OutageState,
    Record,
    TransferEvent,
)
from schemas.topics import Topics

__all__ = [
    "NATIVE_ASSET",
    "NATIVE_LOG_INDEX",
    "SCHEMA_VERSION",
    "BlockTransfers",
    "ChainHead",
    "ChainState",
    "ChainStatus",
    "CorrelatedIncident",
    "DeadLetter",
    "Direction",
    "FeedHeartbeat",
    "LabelSuggestion",
    "OutageEvent",
    "OutageState",
    "Record",
    "SchemaError",
    "Topics",
    "TransferEvent",
    "decode",
    "decode_as",
    "encode",
    "from_dict",
]
