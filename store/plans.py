"""What each Harmony plan allows on the API: the seed's Limited, Standard, Full and Full + Custom, made concrete.

- Solo (limited): 20 requests a minute per key, read-only keys (no uploads, no
  webhooks), at most 2 live keys per person.
- Plus (standard): 60 a minute, reads, uploads and webhooks, 10 keys per person.
- Max (full): 300 a minute, everything, 50 keys per person.
- Enterprise (full + custom): everything, a rate the workspace sets (1,000 a
  minute until it does), no key limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.models import Plan


@dataclass(frozen=True)
class PlanRules:
    access: str
    requests_per_minute: int
    keys_per_person: int | None
    may_write: bool


RULES: dict[Plan, PlanRules] = {
    Plan.SOLO: PlanRules("limited", 20, 2, False),
    Plan.PLUS: PlanRules("standard", 60, 10, True),
    Plan.MAX: PlanRules("full", 300, 50, True),
    Plan.ENTERPRISE: PlanRules("full + custom", 1000, None, True),
}


def requests_per_minute(plan: Plan, custom: int | None) -> int:
    if plan is Plan.ENTERPRISE and custom:
        return custom
    return RULES[plan].requests_per_minute
