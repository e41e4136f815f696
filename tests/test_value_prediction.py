"""The predicted 12-month value outside `kaeru value-eval` (issue 16): from the standing's
fitted models, per segment in the segment report and per shopper in `debug=1`."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adserver.core.value_prediction import model_of, predicted_cents
from adserver.core.value_record import ValueRecord
from adserver.core.value_segments import RfmCuts, ValueStanding, decode_standing, encode_standing
from adserver.delivery.reports import SEGMENT_COLUMNS, segment_rows, to_csv
from adserver.value.models import ValueModel
from adserver.value.refresh import compute_standing
from adserver.value.synthetic import CALIBRATION_DAYS, TRUE_ORDERS, TRUE_SPEND, simulate

TODAY = 20_000
TRUE = (*(TRUE_ORDERS.r, TRUE_ORDERS.alpha, TRUE_ORDERS.a, TRUE_ORDERS.b),
        *(TRUE_SPEND.p, TRUE_SPEND.q, TRUE_SPEND.gamma))  # fmt: skip
CUTS = RfmCuts((10.0, 30.0, 90.0, 180.0), (1.0, 2.0, 3.0, 5.0), (2500.0, 5000.0, 9000.0, 20000.0))


def standing(model: tuple[float, ...] = TRUE) -> ValueStanding:
    return ValueStanding(TODAY, 3, CUTS, 30.0, model)


RECENT = ValueRecord(TODAY - 200, TODAY - 2, 6, 30_000)  # six orders, the last two days ago
ONCE = ValueRecord(TODAY - 300, TODAY - 300, 1, 2_500)  # one order, ten months ago
AGAIN = ValueRecord(TODAY - 100, TODAY - 5, 3, 9_000)


def test_the_prediction_is_the_standings_models_for_the_shoppers_record() -> None:
    model = model_of(standing())
    assert model == ValueModel(TRUE_ORDERS, TRUE_SPEND)
    value = predicted_cents(model, RECENT, TODAY)
    assert value == pytest.approx(
        ValueModel(TRUE_ORDERS, TRUE_SPEND).predicted_value(RECENT, TODAY)
    )
    assert value is not None and value > 0
    # a recent frequent buyer is worth more next year than a one-time buyer of long ago
    once = predicted_cents(model, ONCE, TODAY)
    assert once is not None and 0 <= once < value
    # what the standing's stored form keeps (6 significant digits) predicts the same, to 0.1 %
    kept = model_of(decode_standing(encode_standing(standing())))
    assert predicted_cents(kept, RECENT, TODAY) == pytest.approx(value, rel=1e-3)


@pytest.mark.parametrize("model", [(), TRUE[:6], (*TRUE[:3], 0.0, *TRUE[4:]), (*TRUE[:6], -1.0)])
def test_no_fit_or_impossible_parameters_predict_nothing(model: tuple[float, ...]) -> None:
    assert model_of(standing(model)) is None
    assert predicted_cents(model_of(standing(model)), RECENT, TODAY) is None
    assert predicted_cents(model_of(None), RECENT, TODAY) is None
    assert predicted_cents(model_of(standing()), None, TODAY) is None


def test_the_segment_rows_sum_their_customers_predictions_of_the_sample() -> None:
    records = [RECENT, ONCE, AGAIN, RECENT]
    rows = {row["segment"]: row for row in segment_rows(records, standing(), TODAY)}
    model = model_of(standing())
    assert model is not None
    expected: dict[str, Decimal] = {}
    for record in records:
        name = next(r["segment"] for r in segment_rows([record], standing(), TODAY)
                    if r["customers"])  # fmt: skip
        cents = Decimal(round(model.predicted_value(record, TODAY)))
        expected[name] = expected.get(name, Decimal(0)) + cents
    for name, row in rows.items():
        predicted = Decimal(row["predicted_12m_revenue"])
        # rounded per segment, not per shopper: within a cent per shopper
        assert abs(predicted * 100 - expected.get(name, Decimal(0))) <= row["customers"], name
    assert rows["champions"]["customers"] == 2
    assert Decimal(rows["champions"]["predicted_12m_revenue"]) > Decimal(
        rows["lost"]["predicted_12m_revenue"]
    )
    assert all(row["predicted_12m_revenue"] == "0.00" for row in rows.values()
               if not row["customers"])  # fmt: skip


def test_without_a_fit_the_column_is_empty_not_zero() -> None:
    rows = segment_rows([RECENT, ONCE], standing(()), TODAY)
    assert all(row["predicted_12m_revenue"] is None for row in rows)
    table = to_csv(rows, "segment", SEGMENT_COLUMNS).splitlines()
    assert table[0].endswith(",revenue_share,predicted_12m_revenue")
    assert all(line.endswith(",") for line in table[1:])  # an empty cell


def test_fitted_on_a_synthetic_shop_the_sample_predicts_near_the_true_models() -> None:
    """The refresh's own fit on 2,000 synthetic shoppers: the report's predicted total within
    15 % of what the true parameters predict for the same sample."""
    records = [
        r for s in simulate(2_000, seed=3) if (r := s.record_until(CALIBRATION_DAYS)) is not None
    ]
    fitted = compute_standing(records, CALIBRATION_DAYS)
    assert len(fitted.model) == 7
    rows = segment_rows(records, fitted, CALIBRATION_DAYS)
    total = sum(Decimal(row["predicted_12m_revenue"]) for row in rows)
    truth = ValueModel(TRUE_ORDERS, TRUE_SPEND)
    true_total = sum(truth.predicted_value(r, CALIBRATION_DAYS) for r in records) / 100
    assert float(total) == pytest.approx(true_total, rel=0.15)
