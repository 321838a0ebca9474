"""Rules as declarative YAML files: lykta's defaults, then per-tenant overrides by rule id.

Every problem names the file, the rule and the field. See docs/rules.md for the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from floor.durations import parse_duration
from rules.detectors import DETECTORS
from rules.errors import RuleFileError
from storage.rules import RuleAsset

DEFAULTS = Path(__file__).resolve().parent / "defaults"
SEVERITIES = ("info", "minor", "major", "critical")
ASSET_KINDS = (
    "cabinet",
    "circuit",
    "streetlight",
    "road_weather_station",
    "stormwater_well",
    "pump_station",
    "waste_bin",
)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FAULT = re.compile(r"^[a-z][A-Za-z0-9]{1,62}$")
_RULE_KEYS = {"id", "applies_to", "detector", "params", "fault", "severity", "for", "clear", "enabled", "description"}


def span(text: Any, where: str) -> float:
    """'25m', '2h', '1d6h', '0s' as seconds."""
    try:
        return parse_duration(str(text))
    except ValueError:
        raise RuleFileError(f"{where}: {text!r} is not a duration like 30s, 25m, 2h or 1d") from None


@dataclass(frozen=True)
class AppliesTo:
    kind: str | None = None
    district: str | None = None
    maintenance_area: str | None = None
    min_criticality: int | None = None

    def matches(self, asset: RuleAsset) -> bool:
        return (
            (self.kind is None or asset.kind == self.kind)
            and (self.district is None or asset.district == self.district)
            and (self.maintenance_area is None or asset.maintenance_area == self.maintenance_area)
            and (self.min_criticality is None or asset.criticality >= self.min_criticality)
        )


@dataclass(frozen=True)
class Rule:
    id: str
    detector: str
    fault: str
    severity: str
    applies_to: AppliesTo = AppliesTo()
    params: dict[str, Any] = field(default_factory=dict)
    hold_s: float = 0.0
    """the condition must hold this long before a finding opens"""
    clear_s: float = 0.0
    """and must be gone this long before the finding closes (hysteresis in time)"""
    enabled: bool = True
    source: str = ""


def _check_rule(raw: Any, where: str, base: Rule | None) -> Rule:
    if not isinstance(raw, dict):
        raise RuleFileError(f"{where}: a rule must be a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleFileError(f"{where}, field {sorted(unknown)[0]!r}: unknown field")
    merged: dict[str, Any] = {}
    if base is not None:
        merged = {
            "detector": base.detector,
            "fault": base.fault,
            "severity": base.severity,
            "params": dict(base.params),
            "enabled": base.enabled,
        }
    for key in ("detector", "fault", "severity", "enabled"):
        if key in raw:
            merged[key] = raw[key]
    if "params" in raw:
        if not isinstance(raw["params"], dict):
            raise RuleFileError(f"{where}, field 'params': expected a mapping")
        merged["params"] = {**merged.get("params", {}), **raw["params"]}
    detector = merged.get("detector")
    if detector not in DETECTORS:
        raise RuleFileError(f"{where}, field 'detector': {detector!r} is not one of {', '.join(sorted(DETECTORS))}")
    fault = merged.get("fault")
    if not isinstance(fault, str) or not _FAULT.match(fault):
        raise RuleFileError(f"{where}, field 'fault': expected a fault code such as lampFailure, got {fault!r}")
    severity = merged.get("severity")
    if severity not in SEVERITIES:
        raise RuleFileError(f"{where}, field 'severity': {severity!r} is not one of {', '.join(SEVERITIES)}")
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleFileError(f"{where}, field 'enabled': expected true or false")
    params = DETECTORS[detector].check_params(merged.get("params", {}), f"{where}, field 'params'")
    applies = base.applies_to if base is not None else AppliesTo()
    if "applies_to" in raw:
        spec = raw["applies_to"] or {}
        if not isinstance(spec, dict) or set(spec) - {"kind", "district", "maintenance_area", "min_criticality"}:
            raise RuleFileError(f"{where}, field 'applies_to': use kind, district, maintenance_area, min_criticality")
        if spec.get("kind") is not None and spec["kind"] not in ASSET_KINDS:
            raise RuleFileError(
                f"{where}, field 'applies_to': kind {spec['kind']!r} is not one of {', '.join(ASSET_KINDS)}"
            )
        criticality = spec.get("min_criticality")
        if criticality is not None and (not isinstance(criticality, int) or not 1 <= criticality <= 5):
            raise RuleFileError(f"{where}, field 'applies_to': min_criticality must be 1 to 5")
        applies = AppliesTo(
            kind=spec.get("kind"),
            district=spec.get("district"),
            maintenance_area=spec.get("maintenance_area"),
            min_criticality=criticality,
        )
    hold = span(raw["for"], f"{where}, field 'for'") if "for" in raw else (base.hold_s if base else 0.0)
    clear_s = base.clear_s if base else 0.0
    if "clear" in raw:
        clear = raw["clear"]
        if not isinstance(clear, dict) or set(clear) - {"for"}:
            raise RuleFileError(f"{where}, field 'clear': expected {{for: <duration>}}")
        clear_s = span(clear.get("for", "0s"), f"{where}, field 'clear'")
    return Rule(
        id=str(raw.get("id", base.id if base else "")),
        detector=detector,
        fault=fault,
        severity=severity,
        applies_to=applies,
        params=params,
        hold_s=hold,
        clear_s=clear_s,
        enabled=enabled,
        source=where.split(",", 1)[0],
    )


def parse(text: str, source: str, base: dict[str, Rule] | None = None) -> dict[str, Rule]:
    """Rules of one file, applied over ``base`` (an override changes only the fields it names)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleFileError(f"{source}: expected a mapping with a 'rules' list")
    rules = dict(base or {})
    seen: set[str] = set()
    for n, raw in enumerate(doc["rules"], start=1):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"{source}, rule {rule_id}" if rule_id else f"{source}, rule {n}"
        if not isinstance(rule_id, str) or not _ID.match(rule_id):
            raise RuleFileError(f"{where}, field 'id': use 1-63 lower-case letters, digits or '-'")
        if rule_id in seen:
            raise RuleFileError(f"{where}, field 'id': {rule_id!r} appears twice in this file")
        seen.add(rule_id)
        rules[rule_id] = _check_rule(raw, where, rules.get(rule_id))
    return rules


def load(overrides: list[Path] | None = None) -> list[Rule]:
    """lykta's defaults, then each override file in order; only enabled rules are returned."""
    rules: dict[str, Rule] = {}
    for path in sorted(DEFAULTS.glob("*.yaml")):
        rules = parse(path.read_text(encoding="utf-8"), f"rules/defaults/{path.name}", rules)
    for path in overrides or []:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuleFileError(f"{path}: the rule file does not exist") from None
        rules = parse(text, str(path), rules)
    return [r for r in rules.values() if r.enabled]


def with_params(rule: Rule, **params: Any) -> Rule:
    return replace(rule, params={**rule.params, **params})
