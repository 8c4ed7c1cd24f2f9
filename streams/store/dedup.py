"""Read-before-write deduplication of transfer batches, so the per-minute materialized view stays exact.

A materialized view sees every block inserted into ``transfers``, duplicates included, while
ReplacingMergeTree collapses duplicates only in the table, at some later merge. So a batch is checked
against what the table already holds before it is written, and a row goes in only if it changes its
transfer's canonical state:

- a redelivered Kafka message (same key, same offset = ``ingest_version``) is dropped;
- so is any row not newer than the newest stored version of its transfer (a merge may already have
  removed the older versions, so "same offset stored" alone would let a replay of them back in);
- a retraction (``removed = 1``) or a re-add after a reorg flip has a new offset and changes the state:
  it goes in, and the view counts it with its sign;
- a transfer republished unchanged under a new offset (a connector restarted before its checkpoint) is
  dropped, as is a retraction of a transfer never stored: either would move the count the wrong way.

The view's sum per transfer is then 1 when its newest stored row is an addition and 0 otherwise, the
same answer as ``FINAL``. The check runs inside each insert attempt, so a retry after an insert that
reached the server before the connection broke drops what already arrived. Rows that arrived that way
may have reached ``transfers`` without reaching the view (a server killed mid-insert), so the minutes of
any batch found already stored are repaired from ``transfers`` afterwards (``streams/store/summary.py``).

The lookup asks for the batch's own transactions only. Its time spans alone (what the table's index
narrows by) hold every transfer their exchanges made in that time, mostly stored by earlier batches: in a
replay of a thousand exchanges, thousands of rows per batch, whose reading cost the worker more CPU than
the rest of the check and which kept every batch off the fast path for one with nothing stored. A
transaction is named by the first ``TX_PREFIX`` characters of its hash, a quarter of the text of the
whole hash: text is what the lookup costs the worker (clickhouse-driver escapes parameters character by
character in Python and inlines them into the query), and a transfer of another transaction sharing the
prefix merely comes along. 18.16 caps that text at ``max_query_size`` (262144 bytes), so a large batch is
looked up in several queries, each measured to stay under ``max_query_bytes``. The prefixes go in as one
comma-joined string, split on the server: one literal parses far faster than thousands (5,000 parameters
cost chdb ~85 ms a query), and 18.16 takes neither an array parameter nor an array after ``IN``.

Most rows are never looked up: :mod:`streams.store.recent_transfers` knows, per (exchange, chain), the newest
block time the table held before this process wrote the pair, and the blocks it stored transfers of since;
an addition newer than that, of a block not stored yet, is surely new. Rows of stored blocks, retractions,
rows at or below the floor and every row of a retried insert go to the table.

It relies on the transfer's versions being comparable: every event of one exchange comes through one
Kafka partition (the topic is keyed by exchange, and a ``block_transfers`` record holds only the transfers of
its partition's exchanges), so its offsets grow. The transfers of one such record share its offset, and no
transfer appears twice in one record. Adding partitions moves
exchanges to partitions whose offsets start lower; the stored versions then win (as they do in FINAL).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.store.backend import ClickHouseBackend
from streams.store.columns import column_length, take
from streams.store.recent_transfers import Pair, RecentTransfers, block_key
from streams.store.summary import repair_withdrawals_per_minute

log = logging.getLogger(__name__)

KEY = ("exchange", "chain", "block_hash", "tx_hash", "log_index")
"""Identity of one transfer (block_time follows from block_hash)."""
Key = tuple[Any, ...]
TX_PREFIX = 16
"""Characters of a tx hash the lookup compares (14 random hex digits after an EVM hash's 0x)."""
TX_SEPARATOR = ","
"""Joins the batch's tx hash prefixes into the lookup's one string parameter (no chain's hashes hold it)."""
_ESCAPED = "\b\f\r\n\t\0\a\v\\'"
"""Characters clickhouse-driver writes as two when it inlines a string parameter."""


class TransferDedup:
    """Filters a batch of ``transfers`` columns down to the rows that change the stored state."""

    table = "transfers"

    def __init__(self, cluster_gap_s: int = 3600, one_range_s: int = 6 * 3600, max_ranges: int = 200,
                 max_query_bytes: int = 200_000, remember: bool = True) -> None:
        self.cluster_gap_s = cluster_gap_s
        """Block times of one exchange closer than this are looked up as one range."""
        self.one_range_s = one_range_s
        """A batch spanning at most this much block time is looked up as one range for all its exchanges
        (one index condition instead of one per exchange, which costs ClickHouse ~0.5 ms each to analyse);
        only a batch mixing distant times (a backfill next to live data) is split per exchange."""
        self.max_ranges = max_ranges
        """Ranges per lookup query (keeps the query text small for old servers' max_query_size)."""
        self.max_query_bytes = max_query_bytes
        """Longest lookup query text, parameters inlined as clickhouse-driver sends them: the batch's
        transactions are split over as many queries as this needs (18.16 refuses more than 262144 bytes)."""
        self._repair: list[tuple[str, int, int]] = []
        self.recent = RecentTransfers() if remember else None
        """What this process stored lately (:mod:`streams.store.recent_transfers`); None: look every row up."""
        self._in_flight = False
        """A batch was checked and its insert has not succeeded yet: a retry checks every row against the table."""
        self._learned: tuple[int, list[tuple[Pair, int, int]]] = (0, [])
        self.rows_looked_up = 0
        """Rows checked against the table (the rest were known new from :attr:`recent`)."""

    def keep(self, backend: ClickHouseBackend, columns: Mapping[str, Sequence[Any]]) -> list[int] | None:
        """Indices of the rows to insert, in batch order; ``None`` means all of them."""
        n = column_length(columns)
        retry, self._in_flight = self._in_flight, True
        self._learned = (0, [])
        self._repair = []
        if n == 0:
            return None
        versions = columns["ingest_version"]
        removed = columns["removed"]
        unsure, blocks = self._surely_new(backend, columns, n, retry)
        self.rows_looked_up += len(unsure)
        if not unsure and _distinct(columns, n):
            self._learn(columns, blocks, range(n))
            return None  # the common case, known without asking the table: all new additions, no repeats
        stored = self.stored(backend, columns if len(unsure) == n else take(columns, unsure)) if unsure else {}
        if not stored and not any(removed) and _distinct(columns, n):
            self._learn(columns, blocks, range(n))
            return None  # all new, all additions, no repeats
        keys: list[Key] = list(zip(*(columns[k] for k in KEY), strict=True))
        state: dict[Key, tuple[int, int]] = dict(stored)
        kept: list[int] = []
        replayed: list[int] = []
        for i in sorted(range(n), key=versions.__getitem__):
            key, version, gone = keys[i], int(versions[i]), int(removed[i])
            current = state.get(key)
            if current is not None and current[0] >= version:
                if key in stored and stored[key][0] >= version:
                    replayed.append(i)  # an earlier insert of this batch (or a later one) landed
                continue  # redelivered, or older than what is stored
            if (current is None and gone) or (current is not None and current[1] == gone):
                continue  # would not change the canonical state
            state[key] = (version, gone)
            kept.append(i)
        kept.sort()
        self._learn(columns, blocks, kept)
        if replayed:
            self._repair = self.ranges({"exchange": [columns["exchange"][i] for i in replayed],
                                        "block_time": [columns["block_time"][i] for i in replayed]})
        if len(kept) < n:
            log.info("transfers: %d of %d rows already stored or without effect, not inserted", n - len(kept), n)
        return kept

    def _surely_new(self, backend: ClickHouseBackend, columns: Mapping[str, Sequence[Any]], n: int,
                    retry: bool) -> tuple[list[int], list[int | None]]:
        """(indices of the rows to look up in the table, each row's :func:`block_key` where it was taken).

        The rest are additions :attr:`recent` knows to be new (see :mod:`streams.store.recent_transfers`)."""
        recent = self.recent
        if recent is None or retry:  # a retry: the failed attempt may have stored rows nobody remembered
            return list(range(n)), [None] * n
        exchange, chain = columns["exchange"], columns["chain"]
        first = recent.unknown(zip(exchange, chain, strict=True))
        if first:
            generation = recent.generation
            recent.set_floors(self.floors(backend, first), generation)
        unsure, keys = recent.unsure_rows(exchange, chain, columns["block_hash"], columns["block_time"],
                                          columns["removed"])
        return unsure, list(keys)

    def floors(self, backend: ClickHouseBackend, pairs: Sequence[Pair]) -> dict[Pair, int]:
        """The newest block time the table holds per pair (0 for a pair it holds nothing of)."""
        found: dict[Pair, int] = dict.fromkeys(pairs, 0)
        exchanges = sorted({exchange for exchange, _ in pairs})
        for start in range(0, len(exchanges), self.max_ranges):
            chunk = exchanges[start:start + self.max_ranges]
            params = {f"e{j}": exchange for j, exchange in enumerate(chunk)}
            names = ", ".join(f"{{e{j}:String}}" for j in range(len(chunk)))
            rows = backend.query(f"SELECT exchange, chain, toUInt32(max(block_time)) AS t "
                                 f"FROM {backend.database}.{self.table} "
                                 f"WHERE exchange IN ({names}) GROUP BY exchange, chain", params)
            for r in rows:
                pair = (r["exchange"], r["chain"])
                if pair in found:
                    found[pair] = int(r["t"])
        return found

    def _learn(self, columns: Mapping[str, Sequence[Any]], blocks: list[int | None], rows: Iterable[int]) -> None:
        """Note the blocks the insert about to be made stores transfers of, for :meth:`after_insert` to remember
        on success (every stored row's, whichever way it was checked: a block stored but not remembered would
        let a republish of it through unchecked)."""
        recent = self.recent
        if recent is None:
            return
        exchange, chain, block_hash, times = columns["exchange"], columns["chain"], columns["block_hash"], \
            columns["block_time"]
        learned = []
        for i in rows:
            key = blocks[i]
            if key is None:
                key = block_key(exchange[i], chain[i], block_hash[i])
            learned.append(((exchange[i], chain[i]), int(times[i]), key))
        self._learned = (recent.generation, learned)

    def after_insert(self, backend: ClickHouseBackend) -> None:
        """Remember what the insert stored; repair the per-minute view where this batch had already (partly)
        landed before."""
        self._in_flight = False
        if self.recent is not None:
            generation, learned = self._learned
            self.recent.remember(learned, generation)
            self._learned = (0, [])
        if self._repair:
            repair_withdrawals_per_minute(backend, self._repair, self.max_ranges)
            self._repair = []

    def ranges(self, columns: Mapping[str, Sequence[Any]]) -> list[tuple[str, int, int]]:
        """(exchange, first, last block time) spans covering the batch, clustered per exchange."""
        all_times = columns["block_time"]
        lo, hi = int(min(all_times)), int(max(all_times))
        if hi - lo <= self.one_range_s:  # the usual batch: recent blocks, one span for every exchange
            return [(exchange, lo, hi) for exchange in sorted(set(columns["exchange"]))]
        times: dict[str, list[int]] = {}
        for exchange, t in zip(columns["exchange"], columns["block_time"], strict=True):
            times.setdefault(exchange, []).append(int(t))
        spans: list[tuple[str, int, int]] = []
        for exchange, values in times.items():
            ordered = sorted(set(values))
            lo = hi = ordered[0]
            for t in ordered[1:]:
                if t - hi > self.cluster_gap_s:
                    spans.append((exchange, lo, hi))
                    lo = t
                hi = t
            spans.append((exchange, lo, hi))
        return spans

    def stored(self, backend: ClickHouseBackend, columns: Mapping[str, Sequence[Any]]) -> dict[Key, tuple[int, int]]:
        """Newest stored (version, removed) of the batch's transfers.

        Other transfers in its spans may come along (another log of one of its transactions, or another
        transaction whose hash starts alike); ``keep`` only ever looks up the batch's keys: they change nothing.
        """
        spans = self.ranges(columns)
        chunks = [spans[start:start + self.max_ranges] for start in range(0, len(spans), self.max_ranges)]
        found: dict[Key, tuple[int, int]] = {}
        for chunk, prefixes in zip(chunks, _tx_prefixes_per_chunk(columns, chunks), strict=True):
            params: dict[str, Any] = {}
            by_range: dict[tuple[int, int], list[str]] = {}
            for j, (exchange, lo, hi) in enumerate(chunk):
                params[f"e{j}"] = exchange
                by_range.setdefault((lo, hi), []).append(f"{{e{j}:String}}")
            terms = []
            for k, ((lo, hi), names) in enumerate(by_range.items()):
                params.update({f"a{k}": lo, f"b{k}": hi})
                terms.append(f"(block_time >= {{a{k}:UInt32}} AND block_time <= {{b{k}:UInt32}} "
                             f"AND exchange IN ({', '.join(names)}))")
            # the spans as PREWHERE: the transaction check then reads and tests only the rows they select
            select = (f"SELECT {', '.join(KEY)}, max(ingest_version) AS v, argMax(removed, ingest_version) AS r "
                      f"FROM {backend.database}.{self.table} PREWHERE {' OR '.join(terms)}")
            group = f" GROUP BY {', '.join(KEY)}"
            if any(TX_SEPARATOR in tx for tx in prefixes):  # could not be split back out: the spans alone then
                queries = [(select + group, params)]
            else:
                sql = (f"{select} WHERE substringUTF8(tx_hash, 1, {TX_PREFIX}) "
                       f"IN (SELECT arrayJoin(splitByChar('{TX_SEPARATOR}', {{tx:String}}))){group}")
                # an upper bound: the placeholders are counted besides the values inlined for them
                room = self.max_query_bytes - len(sql.encode()) - sum(_inlined_bytes(e) for e, _, _ in chunk)
                queries = [(sql, {**params, "tx": part}) for part in _parts(prefixes, max(room, 1))]
            for query, query_params in queries:
                for r in backend.query(query, query_params):
                    found[tuple(r[k] for k in KEY)] = (int(r["v"]), int(r["r"]))
        return found


def _tx_prefixes_per_chunk(columns: Mapping[str, Sequence[Any]],
                           chunks: Sequence[Sequence[tuple[str, int, int]]]) -> list[list[str]]:
    """The distinct tx hash prefixes of the rows each chunk of spans covers, in batch order.

    Giving every chunk all of the batch's prefixes would find the same rows (the spans select, the
    prefixes only narrow), but chunks are common, not a backfill's oddity: a batch of recent rows still has
    one span per exchange, so more than 200 exchanges make several chunks. Measured at 1,000 exchanges and
    5,000 rows: each chunk's query is ~100 KB with its own prefixes and ~440 KB with all of them, and the
    driver's escaping takes ~5 ms rather than ~19 ms per batch.
    """
    if len(chunks) == 1:
        return [list(dict.fromkeys(tx[:TX_PREFIX] for tx in columns["tx_hash"]))]
    where: dict[str, tuple[list[int], list[int]]] = {}  # exchange -> its spans' starts, their chunks
    for c, chunk in enumerate(chunks):
        for exchange, lo, _ in chunk:
            starts, numbers = where.setdefault(exchange, ([], []))
            starts.append(lo)
            numbers.append(c)
    prefixes: list[dict[str, None]] = [{} for _ in chunks]
    for exchange, t, tx in zip(columns["exchange"], columns["block_time"], columns["tx_hash"], strict=True):
        starts, numbers = where[exchange]
        prefixes[numbers[0] if len(numbers) == 1 else numbers[bisect_right(starts, t) - 1]][tx[:TX_PREFIX]] = None
    return [list(p) for p in prefixes]


def _parts(prefixes: list[str], room: int) -> list[str]:
    """``prefixes`` joined into strings of at most ``room`` bytes once inlined (or of one prefix)."""
    text = TX_SEPARATOR.join(prefixes)
    size = _inlined_bytes(text)
    if size <= room or len(prefixes) == 1:
        return [text]
    step = -(-len(prefixes) // -(-size // room))  # as many a part as fit on average; a part too long splits again
    return [part for start in range(0, len(prefixes), step) for part in _parts(prefixes[start:start + step], room)]


def _inlined_bytes(value: str) -> int:
    """Bytes of ``value`` as clickhouse-driver inlines a string parameter: quoted, some characters escaped."""
    return len(value.encode()) + 2 + sum(map(value.count, _ESCAPED))


def _distinct(columns: Mapping[str, Sequence[Any]], n: int) -> bool:
    """Whether no transfer key repeats in the batch; distinct tx hashes (usual) prove it cheaply."""
    if len(set(columns["tx_hash"])) == n:
        return True
    return len(set(zip(*(columns[k] for k in KEY), strict=True))) == n
