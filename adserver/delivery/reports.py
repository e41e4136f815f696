"""Advertiser reports (pure): turn daily counters into rows grouped by one dimension, and a
sample of the shop's value records into rows per RFM segment (`segment_rows`)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from adserver.config.settings import EMAIL_PUBLISHER, ONSITE_PUBLISHER
from adserver.core.value_prediction import model_of, predicted_cents
from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import SEGMENTS, ValueStanding, rfm_score, segment

DIMENSIONS = ("day", "campaign", "publisher", "strategy", "size", "channel")
# Where a counter was earned, from its publisher: Kaeru's own channels have reserved ids (no
# partner page may send them), anything else is an ad on a partner's page.
CHANNELS = {ONSITE_PUBLISHER: "onsite", EMAIL_PUBLISHER: "email"}
ADS_CHANNEL = "ads"


def channel_of(publisher: str) -> str:
    return CHANNELS.get(publisher, ADS_CHANNEL)


METRICS = {
    "imp": "impressions",
    "click": "clicks",
    "render": "rendered",
    "conv": "conversions",
    "revenue": "revenue",
}
MAX_DAYS = 400
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("impressions", "clicks", "ctr", "conversions", "revenue", "rendered")


class ReportError(ValueError):
    pass


def parse_period(raw_from: str | None, raw_to: str | None, today: date) -> list[date]:
    """Days from `from` to `to` inclusive (ISO dates); default: the last 7 days."""
    try:
        end = date.fromisoformat(raw_to) if raw_to else today
        start = date.fromisoformat(raw_from) if raw_from else end - timedelta(days=6)
    except ValueError:
        raise ReportError("from and to must be dates like 2026-11-23") from None
    except OverflowError:
        raise ReportError("dates must be after the first week of year 1") from None
    if start > end:
        raise ReportError("from must not be after to")
    if (end - start).days >= MAX_DAYS:
        raise ReportError(f"a report covers at most {MAX_DAYS} days")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def build_rows(daily: Mapping[str, Mapping[str, Decimal]], by: str) -> list[dict[str, Any]]:
    """Rows of totals per value of `by` (YYYYMMDD keys in `daily`), sorted by that value."""
    if by not in DIMENSIONS:
        raise ReportError(f"by must be one of {', '.join(DIMENSIONS)}")
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for day, counters in daily.items():
        if by == "day":
            totals[f"{day[:4]}-{day[4:6]}-{day[6:]}"]  # every day gets a row, even an empty one
        for field, value in counters.items():
            metric, *placement = field.split("\t")
            if metric not in METRICS or len(placement) != 4:
                continue
            campaign, publisher, strategy, size = placement
            key = {
                "day": f"{day[:4]}-{day[4:6]}-{day[6:]}",
                "campaign": campaign,
                "publisher": publisher,
                "strategy": strategy,
                "size": size,
                "channel": channel_of(publisher),
            }[by]
            totals[key][METRICS[metric]] += value
    return [_row(by, key, totals[key]) for key in sorted(totals)]


def _row(by: str, key: str, values: Mapping[str, Decimal]) -> dict[str, Any]:
    impressions = int(values.get("impressions", 0))
    clicks = int(values.get("clicks", 0))
    return {
        by: key,
        "impressions": impressions,
        "clicks": clicks,
        "ctr": round(100.0 * clicks / impressions, 3) if impressions else 0.0,
        "conversions": int(values.get("conversions", 0)),
        "revenue": str(values.get("revenue", Decimal(0)).quantize(Decimal("0.01"))),
        "rendered": int(values.get("rendered", 0)),
    }


SEGMENT_COLUMNS = (
    "customers",
    "customer_share",
    "conversions",
    "revenue",
    "revenue_share",
    "predicted_12m_revenue",
)


def segment_rows(
    records: Iterable[ValueRecord], standing: ValueStanding, today: int
) -> list[dict[str, Any]]:
    """One row per RFM segment (every segment, in the table's order) of the sampled records,
    scored against the standing's cut points: customers, their share of the sample (%),
    conversions (their orders), revenue and its share (%), and the predicted 12-month revenue
    of those customers (the sum of each one's BG/NBD x Gamma-Gamma value with the standing's
    fitted models; None without a fit). Every column is of the sample, none scaled up to all
    the shop's buyers (times `buyers / sampled` for an estimate of the whole shop)."""
    model = model_of(standing)
    customers: dict[str, int] = dict.fromkeys(SEGMENTS, 0)
    orders: dict[str, int] = dict.fromkeys(SEGMENTS, 0)
    cents: dict[str, int] = dict.fromkeys(SEGMENTS, 0)
    predicted: dict[str, float] = dict.fromkeys(SEGMENTS, 0.0)
    for record in records:
        name = segment(rfm_score(record, standing.cuts, today), record)
        customers[name] += 1
        orders[name] += record.orders
        cents[name] += record.revenue_cents
        predicted[name] += predicted_cents(model, record, today) or 0.0
    everyone, total = sum(customers.values()), sum(cents.values())
    return [
        {
            "segment": name,
            "customers": customers[name],
            "customer_share": round(100.0 * customers[name] / everyone, 2) if everyone else 0.0,
            "conversions": orders[name],
            "revenue": str((Decimal(cents[name]) / 100).quantize(Decimal("0.01"))),
            "revenue_share": round(100.0 * cents[name] / total, 2) if total else 0.0,
            "predicted_12m_revenue": None if model is None else _money(predicted[name]),
        }
        for name in SEGMENTS
    ]


def _money(cents: float) -> str:
    """Cents as a decimal string of the currency's units, to the cent ("1234.50")."""
    return str((Decimal(round(cents)) / 100).quantize(Decimal("0.01")))


def to_csv(rows: list[dict[str, Any]], by: str, columns: tuple[str, ...] = COLUMNS) -> str:
    """RFC 4180 CSV (CRLF, so a CR inside a cell is quoted too). The first column holds ids
    others chose (a publisher id from any partner page, a campaign id): it is neutralised for
    spreadsheets; the other columns are numbers Kaeru computed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([by, *columns])
    for row in rows:
        writer.writerow([neutralise_cell(str(row[by])), *(row[c] for c in columns)])
    return out.getvalue()


def neutralise_cell(text: str) -> str:
    """OWASP CSV injection: a cell starting with `=`, `+`, `-`, `@`, tab or CR would be run as
    a formula by a spreadsheet; a leading `'` makes it text (and is not shown)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


PUBLISHER_DIMENSIONS = ("day", "advertiser", "size")


def publisher_rows(
    by_advertiser: Mapping[str, Mapping[str, Mapping[str, Decimal]]], publisher: str, by: str
) -> list[dict[str, Any]]:
    """A publisher's own report: its counters at every advertiser (campaigns and strategies,
    the advertisers' business, are summed away), by day, advertiser or size."""
    if by not in PUBLISHER_DIMENSIONS:
        raise ReportError(f"by must be one of {', '.join(PUBLISHER_DIMENSIONS)}")
    mine = {
        advertiser: {
            day: {f: v for f, v in counters.items() if _publisher_of(f) == publisher}
            for day, counters in daily.items()
        }
        for advertiser, daily in by_advertiser.items()
    }
    if by == "advertiser":
        rows = []
        for advertiser, daily in sorted(mine.items()):
            if any(daily.values()):
                (total,) = build_rows({"00000000": _merge(daily.values())}, "publisher")
                rows.append({"advertiser": advertiser, **_without(total, "publisher")})
        return rows
    days = sorted({day for daily in mine.values() for day in daily})
    merged = {day: _merge(daily.get(day, {}) for daily in mine.values()) for day in days}
    return build_rows(merged, by)


def _publisher_of(field: str) -> str | None:
    parts = field.split("\t")
    return parts[2] if len(parts) == 5 else None


def _merge(counters: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    merged: dict[str, Decimal] = defaultdict(Decimal)
    for one in counters:
        for field, value in one.items():
            merged[field] += value
    return merged


def _without(row: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}
