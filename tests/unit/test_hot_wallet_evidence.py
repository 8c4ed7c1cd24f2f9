"""The hot-wallet evidence book on the simulated exchange: what it proposes, what it refuses, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.exchange_sim import ExchangeSim, address_for, label_file, simulate
from connectors.family import ChainFamily
from connectors.hot_wallets import book_state
from connectors.hot_wallets import label_file as label_out
from connectors.hot_wallets.evidence import EvidenceBook, HotWalletRule, Verdict
from connectors.labels import LabelRegistry
from connectors.rotation import RotationWatch

FUNDING = 50 * 10**18
START = 1_700_000_000


def registry(tmp_path: Path, family: str = "evm", chain: str = "ethereum", extra: str = "") -> LabelRegistry:
    path = tmp_path / "labels.toml"
    path.write_text(label_file(family, chain) + extra)
    return LabelRegistry.from_files([path])


def play(book: EvidenceBook, sim: ExchangeSim, family: str = "evm") -> None:
    for i, moves in enumerate(sim.blocks):
        for n, m in enumerate(moves):
            book.observe(START + i * sim.block_time_s, f"tx{i}:{n}", "native", m.amount,
                         address_for(family, m.sender), address_for(family, m.recipient))


def names(family: str = "evm") -> dict[str, str]:
    known = ["hot-1", "hot-2", "hot-3", "router", "market-maker", "payroll", "cold"]
    return {address_for(family, n): n for n in known}


def judged(book: EvidenceBook, family: str = "evm") -> dict[str, Verdict]:
    return {names(family).get(v.evidence.address, v.evidence.address): v for v in book.verdicts()}


@pytest.mark.parametrize(("family", "chain"), [("evm", "ethereum"), ("solana", "solana"), ("bitcoin", "bitcoin"),
                                               ("tron", "tron")])
def test_the_hot_wallets_are_proposed_and_each_decoy_fails_its_own_check(tmp_path, family, chain):
    labels = registry(tmp_path, family, chain)
    book = EvidenceBook(chain, lambda: labels, {"native": FUNDING})
    play(book, simulate(FUNDING), family)
    verdicts = judged(book, family)
    assert {n for n, v in verdicts.items() if v.hot} == {"hot-1", "hot-2"}
    assert verdicts["router"].failed == ["round_trip"]  # funded by the exchange, pays thousands, steadily
    assert verdicts["market-maker"].failed == ["recipients"]
    assert set(verdicts["payroll"].failed) == {"recipients", "active_windows", "steadiness"}
    hot = verdicts["hot-1"]
    assert hot.sweeps >= 100 and hot.evidence.top_ups >= 5 and hot.steadiness > 0.9 and hot.round_trip == 0
    assert hot.summary().startswith(f"funded by {address_for(family, 'cold')}; ")


def test_a_rotation_is_suggested_within_thirty_minutes_of_the_new_wallets_first_payout(tmp_path):
    hots = "".join(f'\n[[wallet]]\nexchange = "simex"\nchain = "ethereum"\naddress = "{address_for("evm", h)}"\n'
                   f'role = "hot"\nsource = "known"\n' for h in ("hot-1", "hot-2"))
    labels = registry(tmp_path, extra=hots)
    sim = simulate(FUNDING, rotation_at=700)
    watch = RotationWatch("ethereum", lambda: labels, {"native": FUNDING}, clock=lambda: 1.0)
    suggestions = []
    for i, moves in enumerate(sim.blocks):
        for m in moves:
            found = watch.observe(START + i * 12, "tx", "native", m.amount, address_for("evm", m.sender),
                                  address_for("evm", m.recipient))
            if found is not None:
                suggestions.append((i, found))
    assert [names().get(s.address) for _, s in suggestions] == ["hot-3"]
    block, suggestion = suggestions[0]
    first = sim.first_payout_of_new_hot
    assert first is not None and 0 < (block - first) * 12 <= 30 * 60
    assert suggestion.detected_at == START + block * 12 and suggestion.sweeps == 0 and suggestion.top_ups == 1


def test_a_known_wallet_labelled_cold_that_pays_users_is_proposed_hot(tmp_path):
    """Reserve lists ship as cold; the one among them that pays users is found from its behaviour."""
    extra = (f'\n[[wallet]]\nexchange = "simex"\nchain = "ethereum"\naddress = "{address_for("evm", "hot-1")}"\n'
             'role = "cold"\nsource = "a reserve list"\n')
    labels = registry(tmp_path, extra=extra)
    book = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    play(book, simulate(FUNDING))
    hot = judged(book)["hot-1"]
    assert hot.hot and hot.evidence.link == "labelled cold"


def test_a_wallet_paying_in_one_burst_is_not_steady(tmp_path):
    labels = registry(tmp_path)
    book = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    cold, airdrop = address_for("evm", "cold"), address_for("evm", "airdrop")
    book.observe(START, "fund", "native", FUNDING * 10, cold, airdrop)
    for i in range(500):  # 500 distinct recipients within a minute, then nothing for two hours
        book.observe(START + 60 + i // 10, f"p{i}", "native", FUNDING // 1000, airdrop, f"0x{i:040x}")
    book.observe(START + 7200, "other", "native", 1, cold, address_for("evm", "someone"))
    (verdict,) = [v for v in book.verdicts() if v.evidence.address == airdrop]
    assert set(verdict.failed) == {"active_windows", "steadiness"}


def test_memory_is_bounded_by_candidates_and_trails(tmp_path):
    labels = registry(tmp_path)
    book = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING}, max_candidates=50, max_trails=100)
    play(book, simulate(FUNDING, blocks=600))
    assert len(book.candidates) <= 50 and len(book.trails) <= 100


def test_the_book_survives_a_round_trip_through_its_resume_file(tmp_path):
    labels = registry(tmp_path)
    sim = simulate(FUNDING, blocks=600)
    whole = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    play(whole, sim)
    half = ExchangeSim(sim.blocks[:300], sim.block_time_s, sim.hot, sim.decoys)
    rest = ExchangeSim([[] for _ in range(300)] + sim.blocks[300:], sim.block_time_s, sim.hot, sim.decoys)
    first = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    play(first, half)
    resume = book_state.ResumeFile(tmp_path / "r.json", {"run": 1})
    resume.write(first, 300)
    second = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    assert resume.read(second) == 300
    play(second, rest)
    assert [v.summary() for v in second.verdicts()] == [v.summary() for v in whole.verdicts()]
    with pytest.raises(ValueError, match="another discovery run"):
        book_state.ResumeFile(tmp_path / "r.json", {"run": 2}).read(EvidenceBook("x", lambda: labels, {}))


def test_bitcoin_change_back_to_the_payer_is_counted(tmp_path):
    labels = registry(tmp_path, "bitcoin", "bitcoin")
    book = EvidenceBook("bitcoin", lambda: labels, {"native": 10**9})
    cold, hot = address_for("bitcoin", "cold"), address_for("bitcoin", "hot-1")
    book.observe(START, "t", "native", 10**10, cold, hot)
    book.observe(START + 1, "u", "native", 10**6, hot, address_for("bitcoin", "user"))
    book.observe(START + 1, "u", "native", 10**9, hot, hot)
    assert book.candidates[hot].change == 1 and book.candidates[hot].payouts == 1


def test_the_label_file_is_appended_to_and_never_overrides_a_user_entry(tmp_path):
    labels_dir = tmp_path / "l"
    labels_dir.mkdir()
    (labels_dir / "a.toml").write_text(label_file("evm", "ethereum"))
    (labels_dir / "b.toml").write_text(
        f'[[wallet]]\nexchange = "simex"\nchain = "ethereum"\naddress = "{address_for("evm", "hot-2")}"\n'
        'role = "deposit"\nsource = "mine"\n')
    labels = LabelRegistry.from_files([labels_dir])
    book = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    play(book, simulate(FUNDING))
    out = tmp_path / "found.toml"
    out.write_text("# my notes stay\n")
    outcomes = label_out.write(out, "ethereum", ChainFamily.EVM, book.verdicts(), labels, 1, 1500)
    by_name = {names().get(o.verdict.evidence.address): o for o in outcomes}
    assert by_name["hot-1"].written and not by_name["hot-2"].written
    assert by_name["hot-2"].why.startswith("labelled deposit in your")
    text = out.read_text()
    assert text.startswith("# my notes stay\n") and text.count("[[wallet]]") == 1
    again = label_out.write(out, "ethereum", ChainFamily.EVM, book.verdicts(), labels, 1, 1500)
    assert out.read_text() == text and [o.why for o in again if names().get(o.verdict.evidence.address) == "hot-1"] \
        == [f"already in {out}"]
    loaded = LabelRegistry.from_files([labels_dir, out]).lookup("ethereum", address_for("evm", "hot-1"))
    assert loaded is not None and loaded.role.value == "hot" and "blocks 1-1500" in loaded.source


def test_a_shipped_cold_entry_may_be_relabelled_hot(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(label_out, "SHIPPED_LABELS", shipped.resolve())
    (shipped / "reserves.toml").write_text(
        label_file("evm", "ethereum") + f'\n[[wallet]]\nexchange = "simex"\nchain = "ethereum"\n'
        f'address = "{address_for("evm", "hot-1")}"\nrole = "cold"\nsource = "reserve list"\n')
    labels = LabelRegistry.from_files([shipped])
    book = EvidenceBook("ethereum", lambda: labels, {"native": FUNDING})
    play(book, simulate(FUNDING))
    out = tmp_path / "found.toml"
    outcomes = label_out.write(out, "ethereum", ChainFamily.EVM, book.verdicts(), labels, 1, 2)
    assert {names().get(o.verdict.evidence.address) for o in outcomes if o.written} == {"hot-1", "hot-2"}
    merged = LabelRegistry.from_files([shipped, out]).lookup("ethereum", address_for("evm", "hot-1"))
    assert merged is not None and merged.role.value == "hot"


def test_rule_thresholds_are_checked():
    with pytest.raises(ValueError, match="min_steadiness"):
        HotWalletRule(min_steadiness=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        HotWalletRule(window_s=0)
