"""`haltwatch labels discover` on a simulated exchange, on anvil and on the Solana, Bitcoin and Tron protocol servers.

Each chain carries the same script (:mod:`bench.exchange_sim`): a cold wallet (the only known one), two hot wallets
topped up from it, hundreds of deposit addresses swept into them, thousands of payouts, and three decoys (a DEX
router, a market maker, a payroll wallet). Discovery must propose exactly the two hot wallets, write them as a
label file that loads, and never touch a user's own entry.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.exchange_sim import ExchangeSim, address_for, label_file, simulate
from bench.sim_anvil import play_on_anvil
from connectors.family import ChainFamily
from connectors.hot_wallets.discovery import Discovery, DiscoveryResult
from connectors.hot_wallets.evidence import HotWalletRule
from connectors.hot_wallets.sources import SourceSettings
from connectors.labels import LabelRegistry
from tests.nodes.esplora_node import EsploraFaults
from tests.nodes.scripted import START_TIME, ScriptedEsplora, ScriptedSolana, ScriptedTron
from tests.nodes.tron_node import TronFaults

pytestmark = pytest.mark.integration
FUNDING = {"evm": 50 * 10**18, "solana": 500 * 10**9, "bitcoin": 10 * 10**8, "tron": 100_000 * 10**6}
CHAIN = {"evm": "ethereum", "solana": "solana", "bitcoin": "bitcoin", "tron": "tron"}
BLOCKS = 1_000


def scaled(family: str) -> ExchangeSim:
    return simulate(FUNDING[family], blocks=BLOCKS, deposits=240, payouts_per_block=2.5)


class Chain:
    """A node serving the script, the range it holds, and where to reach it."""

    def __init__(self, family: str, url: str, first: int, last: int, sim: ExchangeSim) -> None:
        self.family, self.url, self.first, self.last, self.sim = family, url, first, last, sim


@pytest.fixture(scope="module")
def evm_chain(anvil: str) -> Chain:
    sim = scaled("evm")
    first, last = asyncio.run(play_on_anvil(anvil, sim))
    return Chain("evm", anvil, first, last, sim)


@pytest.fixture
def node_chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    family = request.param
    sim = scaled(family)
    if family == "solana":
        node: Any = ScriptedSolana(sim)
        with node:
            node.produce(BLOCKS + BLOCKS // 6 + 10)
            yield Chain(family, node.url, node.first_slot, node.finalized, sim)
        return
    node = ScriptedTron(sim, faults=TronFaults(rate_limit_every=251)) if family == "tron" else \
        ScriptedEsplora(sim, faults=EsploraFaults(rate_limit_every=251))
    with node:
        node.produce(BLOCKS)
        yield Chain(family, node.url + ("/api" if family == "bitcoin" else ""), node.first, node.tip, sim)


def discover(chain: Chain, labels: Path, resume: Path | None = None) -> Discovery:
    registry = LabelRegistry.from_files([labels])
    settings = [SourceSettings(CHAIN[chain.family], chain.url, prefetch=4)]
    return Discovery(ChainFamily(chain.family), settings, registry, {"native": FUNDING[chain.family]},
                     HotWalletRule(), resume)


def labels_for(chain: Chain, tmp_path: Path) -> Path:
    path = tmp_path / f"{chain.family}.toml"
    path.write_text(label_file(chain.family, CHAIN[chain.family]))
    return path


def found(result: DiscoveryResult, family: str) -> set[str]:
    names = {address_for(family, n): n for n in ("hot-1", "hot-2", "hot-3", "router", "market-maker", "payroll")}
    return {names.get(v.evidence.address, v.evidence.address) for v in result.hot}


def check(chain: Chain, result: DiscoveryResult) -> None:
    assert result.blocks == chain.last - chain.first + 1
    assert found(result, chain.family) == {"hot-1", "hot-2"}
    judged = {v.evidence.address: v for v in result.verdicts}
    router = judged[address_for(chain.family, "router")]
    assert router.failed == ["round_trip"], router.summary()  # it looks like a hot wallet in every other way
    assert "recipients" in judged[address_for(chain.family, "market-maker")].failed
    assert "recipients" in judged[address_for(chain.family, "payroll")].failed


def test_discovery_on_anvil_finds_the_hot_wallets_and_no_decoy(evm_chain: Chain, tmp_path: Path) -> None:
    result = asyncio.run(discover(evm_chain, labels_for(evm_chain, tmp_path)).run(evm_chain.first, evm_chain.last))
    check(evm_chain, result)
    hot = next(v for v in result.hot if v.evidence.address == address_for("evm", "hot-1"))
    assert hot.sweeps >= 100 and hot.evidence.top_ups >= 3, hot.summary()


@pytest.mark.parametrize("node_chain", ["solana", "bitcoin", "tron"], indirect=True)
def test_discovery_on_each_family_finds_the_hot_wallets_and_no_decoy(node_chain: Chain, tmp_path: Path) -> None:
    """Tron and Bitcoin answer every 251st request with HTTP 429: discovery waits and reads on."""
    result = asyncio.run(discover(node_chain, labels_for(node_chain, tmp_path)).run(node_chain.first,
                                                                                     node_chain.last))
    check(node_chain, result)
    if node_chain.family == "bitcoin":  # the paying wallets reuse their address for change: that shows too
        assert all(v.evidence.change > 100 for v in result.hot)


@pytest.mark.parametrize("node_chain", ["tron"], indirect=True)
def test_an_interrupted_discovery_resumes_to_the_same_verdicts(node_chain: Chain, tmp_path: Path) -> None:
    labels = labels_for(node_chain, tmp_path)
    whole = asyncio.run(discover(node_chain, labels).run(node_chain.first, node_chain.last))
    resume = tmp_path / "resume.json"
    half = node_chain.first + BLOCKS // 2

    async def stopped_halfway() -> DiscoveryResult:
        first = discover(node_chain, labels, resume)
        task = asyncio.create_task(first.run(node_chain.first, node_chain.last))
        while first.next < half and not task.done():
            await asyncio.sleep(0.01)
        first.stop()
        return await task

    partial = asyncio.run(stopped_halfway())
    assert partial.last < node_chain.last and resume.exists() and not partial.complete
    assert (partial.until, partial.resume_file) == (node_chain.last, resume)
    rest = asyncio.run(discover(node_chain, labels, resume).run(node_chain.first, node_chain.last))
    assert rest.blocks == node_chain.last - partial.last and not resume.exists() and rest.complete
    assert [v.summary() for v in rest.verdicts] == [v.summary() for v in whole.verdicts]


@pytest.mark.parametrize("node_chain", ["bitcoin"], indirect=True)
def test_the_command_writes_a_label_file_that_loads_and_keeps_user_entries(node_chain: Chain,
                                                                            tmp_path: Path) -> None:
    labels = labels_for(node_chain, tmp_path)
    hot2 = address_for("bitcoin", "hot-2")
    mine = tmp_path / "mine.toml"
    mine.write_text(f'[[wallet]]\nexchange = "simex"\nchain = "bitcoin"\naddress = "{hot2}"\nrole = "cold"\n'
                    'source = "my own note: this one is our cold storage"\n')
    out = tmp_path / "found.toml"
    out.write_text("# reviewed by me\n")
    command = [sys.executable, "-m", "haltwatch", "labels", "discover", "--chain", "bitcoin", "--url", node_chain.url,
               "--labels", str(labels), "--labels", str(mine), "--out", str(out), "--from-block",
               str(node_chain.first), "--to-block", str(node_chain.last), "--no-progress", "--json",
               "--resume-file", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    outcome = {r["address"]: r["outcome"] for r in rows if r["hot"]}
    assert outcome[address_for("bitcoin", "hot-1")] == "written"
    assert outcome[hot2].startswith("labelled cold in your"), outcome
    text = out.read_text()
    assert text.startswith("# reviewed by me\n") and text.count("[[wallet]]") == 1
    assert "haltwatch labels discover, bitcoin blocks" in text and "sweeps from one-off addresses" in text
    merged = LabelRegistry.from_files([labels, mine, out])
    wallet = merged.lookup("bitcoin", address_for("bitcoin", "hot-1"))
    assert wallet is not None and wallet.role.value == "hot" and wallet.exchange == "simex"
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert out.read_text() == text, "a second run appends nothing it already wrote"


def test_the_live_connector_proposes_a_rotated_hot_wallet_within_thirty_minutes(kafka: str, run_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """The Tron connector follows a chain where the exchange's first hot wallet hands its payouts to a new one.

    The user's labels know the cold wallet and both hot wallets of before; the connector's rotation watch must
    suggest the new wallet, with its evidence, within 30 minutes of chain time of its first payout (the time
    docs/labels.md promises for a wallet that pays 20 users in that time), and suggest nothing else.
    """
    from tests.integration.connector_support import read_topic
    from tests.integration.feed_support import FeedProcess, topics_for, wait_for

    sim = simulate(FUNDING["tron"], blocks=600, deposits=120, payouts_per_block=2.5, rotation_at=300)
    labels = tmp_path / "mine.toml"
    labels.write_text(label_file("tron", "tron") + "".join(
        f'\n[[wallet]]\nexchange = "simex"\nchain = "tron"\naddress = "{address_for("tron", h)}"\nrole = "hot"\n'
        f'source = "known before the rotation"\n' for h in ("hot-1", "hot-2")))
    topics, prefix = topics_for(kafka, "rotation")
    with ScriptedTron(sim) as node:
        node.produce(len(sim.blocks))
        connector = FeedProcess(run_dir, kafka, prefix, [], labels, chain="tron", urls=[node.url],
                                extra=["--poll-s", "0.3", "--rotation-min-funding", "100000"])
        try:
            connector.start(start_block=node.first)
            wait_for(lambda: connector.published() >= node.tip, "the connector to publish every block", connector,
                     timeout_s=180)
        finally:
            connector.stop()
    suggestions = [r.record for r in read_topic(kafka, topics.transfers) if r.record.__class__.__name__ ==
                   "LabelSuggestion"]
    assert [s.address for s in suggestions] == [address_for("tron", "hot-3")], suggestions
    (s,) = suggestions
    first_payout = sim.first_payout_of_new_hot
    assert first_payout is not None
    delay = s.detected_at - (START_TIME + first_payout * sim.block_time_s)
    assert 0 < delay <= 30 * 60, f"proposed {delay} s after its first payout"
    assert (s.exchange, s.funded_by, s.suggested_role) == ("simex", address_for("tron", "cold"), "hot")
    assert s.distinct_recipients >= 20 and s.top_ups == 1 and s.steadiness >= 0.25
    assert "funded by" in s.evidence and "distinct outside addresses" in s.evidence
