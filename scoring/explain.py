"""Reasons from TreeSHAP: LightGBM's exact per-feature contributions (`pred_contrib`), in log-odds,
grouped into a catalogue of reasons a risk officer can act on and an adverse-action notice can name.

Every feature belongs to exactly one reason (the first rule of `CATALOGUE` that matches its name);
a reason's contribution is the sum of its features'. Contributions plus the base value reproduce the
model's raw score (tests/scoring/test_explain.py), so the reasons are what was actually scored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Entity keys of the history features: (feature prefix, code, English label, Chinese label).
_KEYS: Final = (
    ("device", "DEVICE", "Device", "设备"),
    ("phone", "PHONE", "Phone number", "手机号"),
    ("email", "EMAIL", "Email address", "邮箱"),
    ("ip24", "IP-RANGE", "Network (IP range)", "IP 网段"),
    ("ip", "IP", "IP address", "IP 地址"),
    ("address", "ADDRESS", "Home address", "住址"),
    ("postal_code", "POSTCODE", "Postal code", "邮编"),
    ("national_id", "NATIONAL-ID", "National ID number", "身份证件号"),
    ("bank_account", "BANK-ACCOUNT", "Bank account", "银行账户"),
    ("employer", "EMPLOYER", "Employer", "工作单位"),
    ("business_reg", "BUSINESS-REG", "Business registration number", "营业执照号"),
)


# History key -> (English, Chinese) label, for reasons that name an identifier.
KEY_LABELS: Final = {prefix: (en, zh) for prefix, _, en, zh in _KEYS} | {
    "date_of_birth": ("Date of birth", "出生日期")
}


@dataclass(frozen=True, slots=True)
class ReasonDef:
    code: str
    en: str
    zh: str
    pattern: re.Pattern[str]


def _rule(pattern: str, code: str, en: str, zh: str) -> ReasonDef:
    return ReasonDef(code, en, zh, re.compile(pattern))


def _catalogue() -> tuple[ReasonDef, ...]:
    rules = []
    for prefix, code, en, zh in _KEYS:
        rules.append(
            _rule(
                rf"^{prefix}_confirmed_fraud$",
                f"R-{code}-CONFIRMED-FRAUD",
                f"{en} shared with earlier applications confirmed as fraud",
                f"{zh}与已确认欺诈的申请相同",
            )
        )
        rules.append(
            _rule(
                rf"^{prefix}_(apps|identities|emails|amount)_\w+$|^{prefix}_days_since_first_seen$",
                f"R-{code}-VELOCITY",
                f"{en} used on many recent applications or by other applicants",
                f"{zh}近期被多次申请使用或被他人使用",
            )
        )
    rules += [
        _rule(
            r"^(ring_|linked_identities)",
            "R-RING",
            "Linked through shared details to a group of other recent applicants",
            "通过共用信息与近期一组其他申请人关联",
        ),
        _rule(
            r"^date_of_birth_",
            "R-DOB-VELOCITY",
            "Date of birth used with several different emails recently",
            "同一出生日期近期对应多个不同邮箱",
        ),
        _rule(
            r"^nlp_\w+_near_(dup|copies)",
            "R-TEXT-TEMPLATE",
            "Free text matches other recent applications (template text)",
            "填写内容与近期其他申请高度雷同",
        ),
        _rule(
            r"^nlp_risk_",
            "R-TEXT-RISK-PHRASES",
            "Free text resembles known fraud scripts (urgency, third party, vague business, cash-out)",
            "填写内容与已知欺诈话术相似（催促、代办、业务含糊、套现）",
        ),
        _rule(
            r"^nlp_\w+_(fit|margin)$",
            "R-TEXT-MISMATCH",
            "Free text does not fit the declared purpose, industry or employment",
            "填写内容与申报的用途、行业或职业不符",
        ),
        _rule(r"^nlp_", "R-TEXT-CONTENT", "Content of the free text", "填写内容的语义特征"),
        _rule(r"^text_", "R-TEXT-STYLE", "Length and style of the free text", "填写内容的长度与格式"),
        _rule(
            r"^(loan_to_income|payment_to_income|annual_income|loan_amount|loan_term_months)$",
            "R-AFFORDABILITY",
            "Amount requested relative to stated income",
            "申请金额与申报收入不匹配",
        ),
        _rule(
            r"^(email_domain|email_is_freemail|email_valid|email_local_\w+|name_email_similarity)$",
            "R-EMAIL-CHECK",
            "Email address characteristics (free mail, digits, does not match the name)",
            "邮箱特征异常（免费邮箱、数字多、与姓名不符）",
        ),
        _rule(
            r"^phone_(valid|country_mismatch)$",
            "R-PHONE-CHECK",
            "Phone number invalid or from another country",
            "手机号无效或归属地不符",
        ),
        _rule(r"^national_id_valid$", "R-ID-CHECK", "National ID fails validity checks", "证件号校验未通过"),
        _rule(
            r"^(bank_account_age_days|bank_account_missing)$",
            "R-BANK-ACCOUNT",
            "Bank account recently opened or missing",
            "银行账户新开或缺失",
        ),
        _rule(
            r"^(business_\w+|loan_to_revenue)$",
            "R-BUSINESS-PROFILE",
            "Business age, revenue or size",
            "企业成立年限、营收或规模",
        ),
        _rule(
            r"^(channel|ip_missing|ip_is_ipv6|device_id_missing|ua_\w+|session_duration_seconds|"
            r"submitted_hour_utc|submitted_weekday)$",
            "R-CHANNEL",
            "How and when the application was submitted (device, browser, session, time)",
            "提交方式与时间（设备、浏览器、会话时长、时间）",
        ),
        _rule(
            r"^(applicant_age_years|years_at_address|years_employed|employment_status|housing|employer_missing)$",
            "R-APPLICANT-PROFILE",
            "Applicant's age, time at address or employment",
            "申请人年龄、居住或工作年限",
        ),
        _rule(
            r"^(product|loan_purpose|loan_currency|address_country|postal_code_missing)$",
            "R-LOAN-PROFILE",
            "Product, loan purpose and location",
            "产品、贷款用途与所在地区",
        ),
        _rule(r"^attr_", "R-LENDER-ATTRIBUTES", "Lender-provided attributes", "贷款机构提供的属性"),
    ]
    return tuple(rules)


CATALOGUE: Final = _catalogue()
OTHER: Final = ReasonDef("R-OTHER", "Other application details", "其他申请信息", re.compile(""))
TOP_REASONS: Final = 4


def reason_of(feature: str) -> ReasonDef:
    return next((r for r in CATALOGUE if r.pattern.search(feature)), OTHER)


@dataclass(frozen=True, slots=True)
class FeatureContribution:
    name: str
    value: Any  # the feature's value as scored (None: missing)
    contribution: float  # log-odds


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    description: str
    description_zh: str
    contribution: float  # log-odds, summed over its features; > 0 raises the risk
    features: tuple[FeatureContribution, ...]  # by |contribution|, largest first

    def as_dict(self) -> dict[str, Any]:
        """The reason as plain data, as the audit record stores it (`dataclasses.asdict` gives the
        same JSON through a generic, recursive copy; a DECLINE has several reasons)."""
        return {
            "code": self.code,
            "description": self.description,
            "description_zh": self.description_zh,
            "contribution": self.contribution,
            "features": [
                {"name": f.name, "value": f.value, "contribution": f.contribution} for f in self.features
            ],
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    base_value: float  # log-odds before any feature
    raw_score: float  # base_value + sum of all contributions
    reasons: tuple[Reason, ...]  # every reason with a nonzero contribution, largest first

    def risk_raising(self, top: int = TOP_REASONS) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.contribution > 0)[:top]


class Explainer:
    """Groups one model's contributions into reasons; built once per model (the grouping is fixed)."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.names = list(feature_names)
        groups: dict[str, list[int]] = {}
        self.defs: dict[str, ReasonDef] = {}
        for i, name in enumerate(self.names):
            rule = reason_of(name)
            groups.setdefault(rule.code, []).append(i)
            self.defs[rule.code] = rule
        self.groups = {code: np.asarray(idx) for code, idx in groups.items()}

    def explain(
        self, contributions: npt.NDArray[np.float64], values: Sequence[Mapping[str, Any]]
    ) -> list[Explanation]:
        """`contributions`: rows x (features + 1) from `pred_contrib` (the last column is the base value);
        `values`: each row's features by name, as scored."""
        out = []
        for row, named in zip(contributions, values, strict=True):
            reasons = []
            for code, idx in self.groups.items():
                total = float(row[idx].sum())
                if total == 0.0:
                    continue
                order = idx[np.argsort(-np.abs(row[idx]), kind="stable")]
                rule = self.defs[code]
                reasons.append(
                    Reason(
                        code=code,
                        description=rule.en,
                        description_zh=rule.zh,
                        contribution=total,
                        features=tuple(
                            FeatureContribution(self.names[i], named.get(self.names[i]), float(row[i]))
                            for i in order
                            if row[i] != 0.0
                        ),
                    )
                )
            reasons.sort(key=lambda r: -r.contribution)
            out.append(Explanation(float(row[-1]), float(row.sum()), tuple(reasons)))
        return out
