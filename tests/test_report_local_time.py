"""Rebalancing reports for people show the district's clock, labelled; the data stays ISO."""

from __future__ import annotations

from pathlib import Path

from matcher.services.rebalance_report import markdown, write_report_files


def report() -> dict[str, object]:
    """The smallest report a run writes: a summary and empty figures."""
    return {
        "summary": {"run_id": "rb-1", "trigger": "nightly", "requested_by": "scheduler",
                    "started_at": "2030-06-02T18:00:00+00:00",
                    "finished_at": "2030-06-02T18:00:41+00:00", "status": "completed",
                    "note": "", "new": 0, "moved": 0, "revoked": 0, "released": 0, "kept": 0,
                    "moves_capped": 0},
        "objective": {"before": 1.0, "after": 2.0, "gain": 1.0, "bound": 3.0,
                      "stability_adjusted_before": 1.0, "stability_adjusted_after": 2.0},
        "fulfilment_by_kind": {}, "fulfilment_by_grid": {},
        "waiting_days": {}, "partner_utilisation": {"mean_before": 0.0, "mean_after": 0.0},
        "goods_near_expiry": {}, "changes": [],
    }


def test_the_markdown_report_reads_in_beijing_time() -> None:
    text = markdown(report())
    assert "2030-06-03 02:00 to 2030-06-03 02:00 (Beijing time, UTC+8)" in text
    assert "18:00" not in text


def test_another_district_zone_is_named() -> None:
    assert "2030-06-03 00:00 to 2030-06-03 00:00 (UTC+6, Asia/Urumqi)" in markdown(
        report(), "Asia/Urumqi")


def test_the_report_files_keep_iso_times(tmp_path: Path) -> None:
    json_file = write_report_files(report(), tmp_path)[0]
    assert '"started_at": "2030-06-02T18:00:00+00:00"' in json_file.read_text()
