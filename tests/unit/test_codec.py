import json
from dataclasses import replace

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from schemas import (
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
    SchemaError,
    TransferEvent,
    codec,
)
from schemas.codec import decode, decode_as, encode
from schemas.jsonschema import JSON_DIR, render_all, schema_of
from schemas.records import events_of

TRANSFER = TransferEvent(
    chain="ethereum", block_number=19_000_000, block_hash="0xab", block_time=1_700_000_000, tx_hash="0xcd",
    log_index=3, asset="0xdac17f958d2ee523a2206206994597c13d831ec7",
    amount=str(2**255 + 12345),  # beyond 64 bits on purpose
    decimals=6, from_address="0x1", to_address="0x2", exchange="okx", direction=Direction.WITHDRAWAL,
)
HEAD = ChainHead("ethereum", 19_000_000, "0xab", "0xaa", 1_700_000_000, 1_700_000_001.25)
OUTAGE = OutageEvent(
    outage_id="abc", version=2, exchange="okx", scope=["ethereum", "tron"], state=OutageState.RESOLVED,
    started_at=1, detected_at=2, resolved_at=3, expected_rate_per_hour=1200.0, observed_gap_s=2, expected_count=9.5,
    observed_count=0, confidence=0.999, p_value=0.001, last_withdrawal_tx=None, last_withdrawal_chain="ethereum",
    emitted_at=5.5, reason="test",
)
LETTER = DeadLetter("evm:ethereum", "not JSON", "{oops", 1.0, {"url": "ws://x"})
CORRELATED = CorrelatedIncident(
    "c1", 2, ["gate", "okx"], ["o1", "o2"], 1, 2, {"provider": "alibaba-cloud"}, "shared", 3.0
)
STATUS = ChainStatus("tron", ChainState.CHAIN_STALLED, 10, 1, 2.5, None, "node reports no new block", 3.0)
BEAT = FeedHeartbeat("tron", 11, 10, True, 4.0)
SUGGESTION = LabelSuggestion("okx", "ethereum", "0xe", "hot", "0xc", 1, "0xf", 25, 40, 2, 3.0)
BLOCK = BlockTransfers([TRANSFER, replace(TRANSFER, tx_hash="0xce", direction=Direction.DEPOSIT)], HEAD)
RECORDS = [
    TRANSFER, HEAD, OUTAGE, LETTER, replace(TRANSFER, removed=True), CORRELATED, STATUS, BEAT, SUGGESTION, BLOCK,
    BlockTransfers([TRANSFER], None), BlockTransfers([], HEAD),
]


def committed_schemas() -> Registry:
    """Every committed schema under its ``$id``, the way a consumer resolves a record nested in another."""
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in JSON_DIR.glob("*.schema.json")]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.TYPE)
def test_round_trip(record):
    assert decode(encode(record)) == record


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.TYPE)
def test_encoded_records_validate_against_committed_schema(record):
    schema = json.loads((JSON_DIR / f"{record.TYPE}.v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, registry=committed_schemas())
    validator.validate(json.loads(encode(record)))


def test_committed_schema_files_match_the_records():
    committed = {p.name: p.read_text() for p in JSON_DIR.glob("*.schema.json")}
    assert committed == render_all(), "run `python -m schemas.jsonschema` and commit the result"


def test_schema_rejects_what_the_codec_rejects():
    schema = schema_of(TransferEvent)
    bad = json.loads(encode(TRANSFER))
    bad["direction"] = "sideways"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(SchemaError, match="direction"):
        decode(json.dumps(bad))


@pytest.mark.parametrize(
    ("record", "field", "value", "message"),
    [
        (TRANSFER, "block_number", -1, "block_number: must be at least 0, got -1"),
        (TRANSFER, "block_time", -5, "block_time: must be at least 0"),
        (TRANSFER, "log_index", -2, "log_index: must be at least -1"),
        (TRANSFER, "amount", "-5", "amount: expected decimal digits only, got '-5'"),
        (TRANSFER, "amount", "1e30", "amount: expected decimal digits only"),
        (TRANSFER, "amount", "٣", "amount: expected decimal digits only"),  # a digit, but not an ASCII one
        (HEAD, "number", -7, "number: must be at least 0"),
        (HEAD, "received_at", -0.5, "received_at: must be at least 0"),
        (OUTAGE, "observed_count", -1, "observed_count: must be at least 0"),
        (OUTAGE, "resolved_at", -3, "resolved_at: must be at least 0"),
    ],
)
def test_negative_numbers_are_rejected_by_the_codec_and_the_schema(record, field, value, message):
    bad = json.loads(encode(record))
    bad[field] = value
    with pytest.raises(SchemaError, match=message):
        decode(json.dumps(bad))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema_of(type(record)))
    assert decode(encode(replace(TRANSFER, log_index=-1))).log_index == -1, "a native transfer's index is valid"


def test_an_integer_beyond_64_bits_is_reported_as_such():
    bad = json.loads(encode(HEAD))
    bad["number"] = 10**30
    with pytest.raises(SchemaError, match=r"number: integer out of the 64-bit range \(1e\+30\)"):
        decode(json.dumps(bad))


def test_amount_keeps_full_precision():
    assert int(decode(encode(TRANSFER)).amount) == 2**255 + 12345


def test_unknown_fields_are_ignored_for_forward_compatibility():
    data = json.loads(encode(HEAD))
    data["future_field"] = {"x": 1}
    assert decode(json.dumps(data)) == HEAD


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("number"), "number: missing"),
        (lambda d: d.update(number="12"), "number: expected an integer"),
        (lambda d: d.update(number=True), "number: expected an integer"),
        (lambda d: d.update(type="blockz"), "unknown record type"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(received_at=None), "received_at: expected a number"),
    ],
)
def test_invalid_records_raise_schema_error_naming_the_field(mutate, message):
    data = json.loads(encode(HEAD))
    mutate(data)
    with pytest.raises(SchemaError, match=message):
        decode(json.dumps(data))


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"null", b"\xff\xfe"])
def test_garbage_is_a_schema_error(payload):
    with pytest.raises(SchemaError):
        decode(payload)


def test_decode_as_insists_on_type():
    with pytest.raises(SchemaError, match="expected outage"):
        decode_as(encode(HEAD), OutageEvent)
    assert decode_as(encode(OUTAGE), OutageEvent).duration_s == 2


@pytest.mark.parametrize("value", ["sideways", "WITHDRAWAL", 1, None, ["withdrawal"], {"v": "withdrawal"}])
def test_an_enum_field_takes_only_its_values(value):
    bad = json.loads(encode(TRANSFER))
    bad["direction"] = value
    with pytest.raises(SchemaError, match=r"direction: expected one of \['withdrawal', 'deposit', 'internal'\]"):
        decode(json.dumps(bad))
    good = decode(encode(TRANSFER))
    assert good.direction is Direction.WITHDRAWAL


def test_a_block_record_stands_for_its_transfers_then_its_head():
    assert BLOCK.records() == [*BLOCK.transfers, HEAD]
    assert BlockTransfers([TRANSFER], None).records() == [TRANSFER]
    assert list(events_of(BLOCK)) == [*BLOCK.transfers, HEAD] and list(events_of(HEAD)) == [HEAD]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["transfers"][1].pop("exchange"), r"transfers\[\]\.exchange: missing in transfer record"),
        (lambda d: d["transfers"][0].update(block_number="7"), r"transfers\[\]\.block_number: expected an integer"),
        (lambda d: d["transfers"][0].update(type="chain_head"), r"transfers\[\]\.type: expected one of"),
        (lambda d: d["transfers"][0].update(schema_version=2), r"transfers\[\]\.schema_version"),
        (lambda d: d.update(transfers={"a": 1}), "transfers: expected a list"),
        (lambda d: d["transfers"].append("x"), r"transfers\[\]: expected a transfer object"),
        (lambda d: d["head"].pop("hash"), r"head\.hash: missing in chain_head record"),
        (lambda d: d.pop("head"), "head: missing in block_transfers record"),
    ],
)
def test_a_bad_transfer_inside_a_block_record_is_a_schema_error_naming_it(mutate, message):
    data = json.loads(encode(BLOCK))
    mutate(data)
    with pytest.raises(SchemaError, match=message):
        decode(json.dumps(data))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema_of(BlockTransfers), registry=committed_schemas()).validate(data)


def test_a_left_out_field_takes_its_default_and_a_mutable_default_is_not_shared():
    data = json.loads(encode(LETTER))
    del data["context"], data["schema_version"]
    first, second = decode(json.dumps(data)), decode(json.dumps(data))
    assert first == replace(LETTER, context={}) and first.context is not second.context
    transfer = json.loads(encode(TRANSFER))
    del transfer["removed"]
    assert decode(json.dumps(transfer)) == TRANSFER and hash(decode(json.dumps(transfer))) == hash(TRANSFER)



@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.TYPE)
def test_the_typed_decoder_builds_what_the_python_decoder_builds(record):
    """msgspec decodes what ``encode`` writes; the Python decoder, the reference, builds the same record."""
    payload = encode(record)
    typed = codec._typed(payload)
    assert typed is not None, "encode's output takes the fast path"
    assert typed == codec.from_dict(orjson.loads(payload)) == record
    assert type(typed) is type(record)


def test_a_record_whose_type_is_not_its_last_field_decodes_the_same():
    fields = orjson.loads(encode(TRANSFER))
    reordered = orjson.dumps({"type": fields.pop("type"), **fields})
    assert codec._typed(reordered) is None
    assert decode(reordered) == TRANSFER


@pytest.mark.parametrize(("payload", "message"), [
    (encode(replace(TRANSFER, amount="12\n")), "amount: expected decimal digits only"),
    (encode(TRANSFER).replace(b'"schema_version":1', b'"schema_version":2'), "schema_version: this reader"),
    (encode(BLOCK).replace(b'"schema_version":1', b'"schema_version":2', 1),
     "transfers[].schema_version: this reader"),
    (encode(HEAD).replace(b'"number":19000000', b'"number":-1'), "number: must be at least 0"),
    (encode(TRANSFER).replace(b'"log_index":3', b'"log_index":-2'), "log_index: must be at least -1"),
])
def test_what_the_typed_decoder_lets_through_the_python_decoder_refuses_too(payload, message):
    """Nothing the contract refuses gets past the fast path, and the message is the Python decoder's."""
    with pytest.raises(SchemaError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(payload)
