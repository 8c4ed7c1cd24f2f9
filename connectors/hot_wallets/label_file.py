"""Write what discovery found as a label file, beside (never over) what people wrote.

The output is an ordinary label file (``role = "hot"``, ``source`` stating the evidence and the block range),
to be reviewed and loaded after the others like any user file. What is never written:

- an address a user's own label file already names, whatever the role: that entry is the user's call
  (a shipped default, under ``labels/`` of haltwatch, is not: a reserve wallet shipped as ``cold`` that pays
  users is exactly what discovery is for, and the new entry overrides it when loaded after);
- an address the output file already lists: an existing file is only appended to, its text kept byte for
  byte, so entries a reviewer edited or commented stay as they are;
- an address labelled for another exchange (loading it would be refused).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from connectors.eip55 import to_checksum_address
from connectors.family import ChainFamily, lookup_key
from connectors.hot_wallets.evidence import Verdict
from connectors.labels import LabelRegistry, Wallet

SHIPPED_LABELS = Path(__file__).resolve().parents[2] / "labels"
"""haltwatch's own default label files: entries there may be re-labelled by discovery."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one hot verdict: written, or why not."""

    verdict: Verdict
    written: bool
    why: str = ""


def is_shipped(wallet: Wallet) -> bool:
    return bool(wallet.origin) and Path(wallet.origin).resolve().is_relative_to(SHIPPED_LABELS)


def listed(path: Path, family: ChainFamily) -> set[str]:
    """Addresses already in the output file (lookup keys), so they are never written twice."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the existing label file to append to it ({exc})") from None
    wallets = data.get("wallet", [])
    return {lookup_key(family, str(w.get("address", ""))) for w in wallets if isinstance(w, dict)}


def write(path: Path, chain: str, family: ChainFamily, verdicts: list[Verdict], registry: LabelRegistry,
          first: int, last: int) -> list[Outcome]:
    """Append the hot verdicts that may be written; returns what happened to each."""
    already = listed(path, family)
    outcomes: list[Outcome] = []
    entries: list[str] = []
    for verdict in (v for v in verdicts if v.hot):
        e = verdict.evidence
        wallet = registry.lookup(chain, e.address)
        key = lookup_key(family, e.address)
        if key in already:
            outcomes.append(Outcome(verdict, False, f"already in {path}"))
        elif wallet is not None and wallet.exchange != e.exchange:
            outcomes.append(Outcome(verdict, False, f"labelled for {wallet.exchange} in {wallet.origin}"))
        elif wallet is not None and not is_shipped(wallet):
            outcomes.append(Outcome(verdict, False, f"labelled {wallet.role.value} in your {wallet.origin}"))
        else:
            shown = to_checksum_address(e.address) if family is ChainFamily.EVM else e.address
            source = f"haltwatch labels discover, {chain} blocks {first}-{last}: {verdict.summary()}"
            entries.append(
                f'[[wallet]]\nexchange = "{e.exchange}"\nchain = "{chain}"\naddress = "{shown}"\n'
                f'role = "hot"\nsource = "{_toml_text(source)}"\n'
            )
            if family is not ChainFamily.EVM and chain != family.value and not chain.startswith(f"{family.value}-"):
                entries[-1] += f'family = "{family.value}"\n'
            already.add(key)
            outcomes.append(Outcome(verdict, True))
    if entries:
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text() if path.exists() else _header(chain)
        separator = "" if not before or before.endswith("\n\n") else ("\n" if before.endswith("\n") else "\n\n")
        path.write_text(before + separator + "\n".join(entries))
    return outcomes


def _header(chain: str) -> str:
    return (f"# Hot wallets found on {chain} by `haltwatch labels discover`, each with the evidence it was found on.\n"
            "# Review them, then load this file after the others (--labels ... --labels this-file).\n\n")


def _toml_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
