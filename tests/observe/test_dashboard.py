"""The Grafana dashboard in docker/ queries only metrics voicebot exposes, and shows all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from voicebot.observe.metrics import CallMetrics, RecognizerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "voicebot-dashboard.json"
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "gauge": ("",)}


def exposed(registry: CollectorRegistry) -> dict[str, str]:
    """Every series name ``registry`` can expose -> the metric family it belongs to."""
    names: dict[str, str] = {}
    for family in registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_queries_only_metrics_that_exist_and_every_one_of_them() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names = exposed(CallMetrics().registry) | exposed(RecognizerMetrics().registry)
    queried = {name for expr in expressions(dashboard) for name in re.findall(r"\bvoicebot_[a-z0-9_]+", expr)}
    assert queried, "the dashboard queries no voicebot metric"
    assert sorted(queried - names.keys()) == []
    assert sorted(set(names.values()) - {names[q] for q in queried}) == []  # no metric left off the dashboard


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for expr in (t["expr"] for t in panel["targets"]):
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    # no two panels overlap on the 24-column grid
    cells = [(x, y) for p in panels for g in [p["gridPos"]]
             for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])]
    assert len(set(cells)) == len(cells)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "instance"}
