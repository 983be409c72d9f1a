"""results/designs (hls_build.designs): the committed table is generated from the committed plans, all ESTIMATES."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

DESIGNS = Path(__file__).resolve().parents[2] / "results" / "designs"


def _plans() -> dict[str, list[dict]]:
    from hls_build.designs import BOARDS, CANDIDATES

    out = {}
    for board in BOARDS:
        files = [DESIGNS / board / f"{c.name}.json" for c in CANDIDATES]
        out[board] = [json.loads(f.read_text()) for f in files if f.is_file()]
    return out


def test_the_committed_table_is_the_one_its_plans_give():
    from hls_build.designs import markdown

    plans = _plans()
    assert all(plans.values()), "run python -m hls_build.designs"
    assert (DESIGNS / "README.md").read_text() == markdown(plans)


def test_every_plan_is_an_estimate_with_its_caps_and_what_binds():
    for board, plans in _plans().items():
        for p in plans:
            assert p["kind"] == "estimated" and "ESTIMATE" in p["label"] and p["model"]["trained"] is False
            cal = p["calibrated"]
            assert cal["board"] == board and cal["margins"]["band_pct"] and cal["not_modeled"]
            if cal["fits"]:
                assert all(u <= 1.0 for r, u in cal["cap_use"].items() if cal["cap"][r])
            else:  # what does not fit is named
                assert cal["binding_resource"] in ("BRAM_18K", "DSP", "FF", "LUT") and "binds" in cal["limit"]


def test_readme_only_needs_the_plans(tmp_path, capsys):
    from hls_build.designs import main

    assert main(["--out", str(tmp_path), "--readme-only"]) == 2
    assert "no plans in" in capsys.readouterr().err
