"""Allow and deny lists: identifiers a lender has ruled on, which override the model's decision.

Entries are keyed hashes, never clear values: the same HMAC the history uses (`features.history`,
under the history key), of the same normalised value, so a list file carries no personal data.
`fraudscore lists hash --kind phone --value "+1 555 0100"` prints an entry's hash.

    {"deny":  [{"kind": "phone", "hash": "<32 hex>", "note": "case 2026-114"}],
     "allow": [{"kind": "national_id", "hash": "<32 hex>"}]}

A deny match declines, an allow match approves (deny wins when both match); the model's probability
and score are still answered, and the override is the answer's first reason (`R-DENY-LIST-PHONE`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from features.history import KEY_NAMES
from scoring.explain import KEY_LABELS, Reason
from scoring.policy import Decision

KINDS: Final = frozenset(KEY_NAMES)


@dataclass(frozen=True, slots=True)
class Override:
    decision: Decision
    reason: Reason


class PolicyLists:
    def __init__(self, deny: Mapping[str, frozenset[str]], allow: Mapping[str, frozenset[str]]) -> None:
        self.deny, self.allow = deny, allow

    @classmethod
    def load(cls, path: Path) -> PolicyLists:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"policy lists {path}: {exc}") from None
        tables: dict[str, dict[str, set[str]]] = {"deny": {}, "allow": {}}
        for name, table in tables.items():
            for n, entry in enumerate(data.get(name, [])):
                kind, digest = entry.get("kind"), str(entry.get("hash", "")).lower()
                if kind not in KINDS:
                    raise ValueError(f"policy lists {path}: {name}[{n}].kind must be one of {sorted(KINDS)}")
                if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(f"policy lists {path}: {name}[{n}].hash must be 32 hex characters")
                table.setdefault(kind, set()).add(digest)
        return cls(
            {k: frozenset(v) for k, v in tables["deny"].items()},
            {k: frozenset(v) for k, v in tables["allow"].items()},
        )

    def __len__(self) -> int:
        return sum(len(v) for v in self.deny.values()) + sum(len(v) for v in self.allow.values())

    def match(self, keys: Mapping[str, Any]) -> Override | None:
        """The override for one application's hashed keys (`entity_key_rows`), if any."""
        for table, decision, word, word_zh in (
            (self.deny, Decision.DECLINE, "deny", "拒绝"),
            (self.allow, Decision.APPROVE, "allow", "准入"),
        ):
            for kind, hashes in table.items():
                if keys.get(kind) in hashes:
                    label, label_zh = KEY_LABELS.get(kind, (kind.replace("_", " "), kind))
                    return Override(
                        decision,
                        Reason(
                            code=f"R-{word.upper()}-LIST-{kind.upper().replace('_', '-')}",
                            description=f"{label} is on the lender's {word} list",
                            description_zh=f"{label_zh}在贷款机构的{word_zh}名单上",
                            contribution=0.0,
                            features=(),
                        ),
                    )
        return None
