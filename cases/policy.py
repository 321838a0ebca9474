"""The maintenance policy: priorities and due times, skills, correlation, escalation, verification, services.

The shipped defaults (``cases/defaults/policy.yaml``) are merged with the files
given: a mapping merges key by key, anything else replaces. A file with a
top-level ``tenant: <id>`` applies to that tenant only. Errors name the file and
the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cases.errors import PolicyError
from floor.durations import parse_duration

DEFAULTS = Path(__file__).resolve().parent / "defaults" / "policy.yaml"
CONDITIONS = {"fault", "group", "min_share", "min_criticality", "lamps_in_row", "kind"}


DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")


@dataclass(frozen=True)
class Attribute:
    """What a report may say beyond its description (a GeoReport v2 attribute); texts by language."""

    code: str
    datatype: str
    required: bool
    description: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    """for lists: key -> its name by language"""


@dataclass(frozen=True)
class Service:
    code: str
    fault: str
    kind: str
    group: str
    attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True)
class Facts:
    """What the priority rules look at."""

    fault: str
    kind: str
    criticality: int = 2
    group: bool = False
    share: float = 0.0
    lamps_in_row: int = 1


@dataclass(frozen=True)
class Policy:
    due_s: dict[str, float]
    round_every_s: float
    round_anchor: float
    priority_rules: list[tuple[dict[str, Any], str]]
    skills: dict[str, str]
    correlation_faults: frozenset[str]
    correlation_window_s: float
    min_lamps: int
    row_distance_m: float
    escalate_every_s: float
    escalation_email: str | None
    lamp_faults: frozenset[str]
    min_power_w: float
    quiet_s: float
    verify_timeout_s: float
    attach_distance_m: float
    services: dict[str, Service] = field(default_factory=dict)
    triage: str = "inbox"
    """citizen reports: "inbox" (an operator looks first) or "dispatch" (a case and a crew at once)"""
    reports_per_reporter_day: int = 10
    """reports one e-mail address may make in 24 hours"""
    reports_per_address_hour: int = 20
    """reports one network address may make in an hour"""
    api_key: str = "optional"
    """Open311 posts: "optional" (a key given must be valid) or "required" (lykta cases token --role app)"""
    contact: str = ""
    """who to ask about the municipality's Open311 service (its discovery document)"""

    def priority(self, facts: Facts) -> str:
        for when, priority in self.priority_rules:
            if _matches(when, facts):
                return priority
        return "round"

    def due(self, priority: str, opened: float) -> float:
        """When a case of ``priority`` opened at ``opened`` is due."""
        if priority in self.due_s:
            return opened + self.due_s[priority]
        rounds = math.floor((opened - self.round_anchor) / self.round_every_s) + 1
        return self.round_anchor + rounds * self.round_every_s  # the next scheduled round

    def skill(self, fault: str) -> str:
        return self.skills.get(fault, self.skills.get("default", "lighting"))


def _matches(when: dict[str, Any], f: Facts) -> bool:
    return (
        ("fault" not in when or f.fault in when["fault"])
        and ("kind" not in when or f.kind == when["kind"])
        and ("group" not in when or f.group == when["group"])
        and ("min_share" not in when or f.share >= when["min_share"])
        and ("min_criticality" not in when or f.criticality >= when["min_criticality"])
        and ("lamps_in_row" not in when or f.lamps_in_row >= when["lamps_in_row"])
    )


class Policies:
    """The policy of each tenant: defaults, then the general files, then the tenant's own."""

    def __init__(self, files: list[Path] | None = None) -> None:
        base = _read(DEFAULTS)
        self.sources: dict[str | None, list[tuple[Path, dict[str, Any]]]] = {None: [(DEFAULTS, base)]}
        for path in files or []:
            doc = _read(path)
            tenant = doc.pop("tenant", None)
            if tenant is not None and not isinstance(tenant, str):
                raise PolicyError(f"{path}: tenant must be a tenant id")
            self.sources.setdefault(tenant, []).append((path, doc))
        self._cache: dict[str | None, Policy] = {}
        self.get(None)
        for tenant in self.sources:
            self.get(tenant)

    def get(self, tenant_id: str | None) -> Policy:
        if tenant_id not in self._cache:
            merged: dict[str, Any] = {}
            where = DEFAULTS
            layers = self.sources[None] + (self.sources.get(tenant_id, []) if tenant_id else [])
            for path, doc in layers:
                merged = _merge(merged, doc)
                where = path
            self._cache[tenant_id] = build(merged, where)
        return self._cache[tenant_id]


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{path}: expected a mapping at the top")
    return doc


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _span(doc: dict[str, Any], key: str, where: str) -> float:
    raw = doc.get(key)
    try:
        return parse_duration(str(raw))
    except ValueError:
        raise PolicyError(f"{where}.{key}: {raw!r} is not a duration like 4h or 3d") from None


def _section(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: {key} must be a mapping")
    return value


def _number(doc: dict[str, Any], key: str, where: str) -> float:
    raw = doc.get(key)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
        raise PolicyError(f"{where}.{key}: expected a number >= 0, got {raw!r}")
    return float(raw)


def build(doc: dict[str, Any], path: Path) -> Policy:
    """A checked policy from a merged document."""
    known = {"priorities", "priority_rules", "skills", "correlation", "escalation", "verification", "citizen"}
    unknown = set(doc) - known
    if unknown:
        raise PolicyError(f"{path}: unknown section {sorted(unknown)[0]!r} (expected {', '.join(sorted(known))})")
    pri = _section(doc, "priorities", path)
    due: dict[str, float] = {}
    round_every, anchor = 14 * 86400.0, 0.0
    for name, spec in pri.items():
        where = f"{path}: priorities.{name}"
        if not isinstance(spec, dict):
            raise PolicyError(f"{where}: expected a mapping with due, or every and anchor")
        if "due" in spec:
            due[str(name)] = _span(spec, "due", where)
        elif "every" in spec:
            round_every = _span(spec, "every", where)
            try:
                anchor = datetime.fromisoformat(str(spec.get("anchor"))).timestamp()
            except ValueError:
                raise PolicyError(f"{where}.anchor: {spec.get('anchor')!r} is not an ISO time") from None
        else:
            raise PolicyError(f"{where}: needs due (a duration) or every (scheduled rounds)")
    rules = doc.get("priority_rules")
    if not isinstance(rules, list) or not rules:
        raise PolicyError(f"{path}: priority_rules must be a non-empty list")
    checked: list[tuple[dict[str, Any], str]] = []
    for n, rule in enumerate(rules):
        where = f"{path}: priority_rules[{n}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("when"), dict):
            raise PolicyError(f"{where}: expected {{when: {{...}}, priority: NAME}}")
        bad = set(rule["when"]) - CONDITIONS
        if bad:
            raise PolicyError(f"{where}.when: unknown condition {sorted(bad)[0]!r}")
        if rule.get("priority") not in pri:
            raise PolicyError(f"{where}.priority: {rule.get('priority')!r} is not one of {', '.join(pri)}")
        checked.append((dict(rule["when"]), str(rule["priority"])))
    skills = doc.get("skills")
    if not isinstance(skills, dict) or not all(isinstance(v, str) for v in skills.values()):
        raise PolicyError(f"{path}: skills must map fault codes to skill names")
    cor = _section(doc, "correlation", path)
    esc = _section(doc, "escalation", path)
    ver = _section(doc, "verification", path)
    cit = _section(doc, "citizen", path)
    attributes = _attributes(cit.get("attributes") or [], f"{path}: citizen.attributes")
    services: dict[str, Service] = {}
    for n, s in enumerate(cit.get("services") or []):
        if not isinstance(s, dict) or not all(isinstance(s.get(k), str) for k in ("code", "fault", "kind", "group")):
            raise PolicyError(f"{path}: citizen.services[{n}] needs code, fault, kind and group")
        wanted = list(s.get("attributes") or [])
        absent = [a for a in wanted if a not in attributes]
        if absent:
            raise PolicyError(f"{path}: citizen.services[{n}]: no attribute {', '.join(map(str, absent))}")
        services[s["code"]] = Service(
            s["code"], s["fault"], s["kind"], s["group"], tuple(attributes[a] for a in wanted)
        )
    api_key = cit.get("api_key", "optional")
    if api_key not in ("optional", "required"):
        raise PolicyError(f"{path}: citizen.api_key: {api_key!r} is not optional or required")
    triage = cit.get("triage", "inbox")
    if triage not in ("inbox", "dispatch"):
        raise PolicyError(f"{path}: citizen.triage: {triage!r} is not inbox or dispatch")
    limits = cit.get("rate_limit") or {"per_reporter_day": 10, "per_address_hour": 20}
    if not isinstance(limits, dict):
        raise PolicyError(f"{path}: citizen.rate_limit must be a mapping")
    email = esc.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise PolicyError(f"{path}: escalation.email: {email!r} is not an e-mail address")
    return Policy(
        due_s=due,
        round_every_s=round_every,
        round_anchor=anchor,
        priority_rules=checked,
        skills={str(k): str(v) for k, v in skills.items()},
        correlation_faults=frozenset(cor.get("faults") or []),
        correlation_window_s=_span(cor, "window", f"{path}: correlation"),
        min_lamps=int(_number(cor, "min_lamps", f"{path}: correlation")),
        row_distance_m=_number(cor, "row_distance_m", f"{path}: correlation"),
        escalate_every_s=_span(esc, "every", f"{path}: escalation"),
        escalation_email=email,
        lamp_faults=frozenset(ver.get("lamp_faults") or []),
        min_power_w=_number(ver, "min_power_w", f"{path}: verification"),
        quiet_s=_span(ver, "quiet", f"{path}: verification"),
        verify_timeout_s=_span(ver, "timeout", f"{path}: verification"),
        attach_distance_m=_number(cit, "attach_distance_m", f"{path}: citizen"),
        services=services,
        triage=triage,
        reports_per_reporter_day=int(_number(limits, "per_reporter_day", f"{path}: citizen.rate_limit")),
        reports_per_address_hour=int(_number(limits, "per_address_hour", f"{path}: citizen.rate_limit")),
        api_key=api_key,
        contact=str(cit.get("contact") or ""),
    )


def _texts(value: Any, where: str) -> dict[str, str]:
    """Text by language: a mapping language -> text, or one text for all."""
    if isinstance(value, str):
        return {"en": value}
    if not isinstance(value, dict) or not value or not all(isinstance(v, str) for v in value.values()):
        raise PolicyError(f"{where}: give a text, or a mapping of languages (en, sv, pt) to texts")
    return {str(k): v for k, v in value.items()}


def _attributes(items: Any, where: str) -> dict[str, Attribute]:
    if not isinstance(items, list):
        raise PolicyError(f"{where} must be a list")
    found: dict[str, Attribute] = {}
    for n, a in enumerate(items):
        at = f"{where}[{n}]"
        if not isinstance(a, dict) or not isinstance(a.get("code"), str) or a.get("datatype") not in DATATYPES:
            raise PolicyError(f"{at} needs a code and a datatype ({', '.join(DATATYPES)})")
        values = a.get("values") or {}
        if not isinstance(values, dict) or (a["datatype"].endswith("list") and not values):
            raise PolicyError(f"{at}: a {a['datatype']} needs values (key: name)")
        found[a["code"]] = Attribute(
            code=a["code"],
            datatype=a["datatype"],
            required=bool(a.get("required", False)),
            description=_texts(a.get("description", a["code"]), at + ".description"),
            values={str(k): _texts(v, f"{at}.values.{k}") for k, v in values.items()},
        )
    return found
