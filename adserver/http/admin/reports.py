"""Admin API: delivery reports (JSON or CSV) for advertisers and publishers, the report page.
Server-to-server conversions are shop-side tracking: `pixel.conversions`."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

from aiohttp import web

from adserver.core.value_segments import ValueStanding
from adserver.delivery.reports import (
    SEGMENT_COLUMNS,
    ReportError,
    build_rows,
    parse_period,
    publisher_rows,
    segment_rows,
    to_csv,
)
from adserver.http.admin.auth import authorize_advertiser, bearer_token
from adserver.http.app_keys import SETTINGS, STORE
from adserver.http.responses import NO_STORE, json_error, json_response
from adserver.value.refresh import SAMPLE_SIZE
from adserver.value.rfm import rfm_cuts
from adserver.value.timing import typical_interval

REPORT_PAGE = resources.files("adserver").joinpath("static/report.html").read_text("utf-8")


async def report(request: web.Request) -> web.StreamResponse:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|campaign|publisher|strategy|size[&format=csv]`"""
    advertiser = authorize_advertiser(request)
    by = request.query.get("by", "day")
    if by == "segment":
        return await segment_report(request, advertiser)
    try:
        days = parse_period(
            request.query.get("from"), request.query.get("to"), datetime.now(UTC).date()
        )
        daily = await request.app[STORE].ledger.daily_stats(
            advertiser, [d.strftime("%Y%m%d") for d in days]
        )
        rows = build_rows(daily, by)
    except ReportError as exc:
        return json_error(400, str(exc))
    if _wants_csv(request):
        return web.Response(text=to_csv(rows, by), content_type="text/csv", headers=NO_STORE)
    return json_response(
        {
            "advertiser": advertiser,
            "from": days[0].isoformat(),
            "to": days[-1].isoformat(),
            "by": by,
            "rows": rows,
        }
    )


def _wants_csv(request: web.Request) -> bool:
    return request.query.get("format") == "csv" or "text/csv" in request.headers.get("Accept", "")


async def segment_report(request: web.Request, advertiser: str) -> web.StreamResponse:
    """`by=segment`: the shop's customers now, per RFM segment, from a random sample of at
    most `SAMPLE_SIZE` of its indexed buyers' value records, scored against the value
    refresh's cut points (or, before the first refresh, the sample's own); `from` and `to`
    do not apply (a record is a customer's whole history within the lookback)."""
    values = request.app[STORE].values
    today = int(datetime.now(UTC).timestamp() // 86400)
    sample = await values.sample(advertiser, SAMPLE_SIZE)
    standing = await values.read_standing(advertiser)
    source = "refresh"
    if standing is None:
        source = "sample"
        cuts = rfm_cuts(sample.records, today)
        standing = ValueStanding(today, len(sample.records), cuts, typical_interval(sample.records))
    rows = segment_rows(sample.records, standing, today)
    if _wants_csv(request):
        text = to_csv(rows, "segment", SEGMENT_COLUMNS)
        return web.Response(text=text, content_type="text/csv", headers=NO_STORE)
    cut_day = datetime.fromtimestamp(standing.day * 86400, UTC).date().isoformat()
    return json_response(
        {
            "advertiser": advertiser,
            "by": "segment",
            "buyers": sample.indexed,
            "sampled": len(sample.records),
            "cut_points": {"from": source, "day": cut_day},
            "rows": rows,
        }
    )


def authorize_publisher(request: web.Request) -> str:
    """The registered publisher named in the path, if the caller's token is its token (from
    KAERU_PUBLISHERS) or the operator's; else 401, 403 or 404."""
    settings = request.app[SETTINGS]
    publisher = request.match_info["publisher"]
    token = bearer_token(request)
    if token is None:
        raise web.HTTPUnauthorized(
            text="missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="kaeru"'}
        )
    owner = settings.publisher_of_token(token)
    if not settings.is_operator(token) and owner is None:
        raise web.HTTPUnauthorized(text="unknown token")
    if owner is not None and owner != publisher:
        raise web.HTTPForbidden(text="this token belongs to another publisher")
    if publisher not in settings.publishers:
        raise web.HTTPNotFound(text=f"unknown publisher {publisher[:64]!r}")
    return publisher


async def publisher_report(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/publishers/{publisher}/report?from=&to=&by=day|advertiser|size`: what a
    registered publisher's pages delivered, at every advertiser."""
    publisher = authorize_publisher(request)
    by = request.query.get("by", "day")
    advertisers = list(request.app[SETTINGS].advertisers)
    try:
        days = parse_period(
            request.query.get("from"), request.query.get("to"), datetime.now(UTC).date()
        )
        names = [d.strftime("%Y%m%d") for d in days]
        ledger = request.app[STORE].ledger
        daily = {adv: await ledger.daily_stats(adv, names) for adv in advertisers}
        rows = publisher_rows(daily, publisher, by)
    except ReportError as exc:
        return json_error(400, str(exc))
    body = {"publisher": publisher, "from": days[0].isoformat(), "to": days[-1].isoformat()}
    return json_response({**body, "by": by, "rows": rows})


async def report_page(request: web.Request) -> web.StreamResponse:
    return web.Response(text=REPORT_PAGE, content_type="text/html", headers=NO_STORE)
