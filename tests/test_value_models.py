"""BG/NBD and Gamma-Gamma: the formulas against simulation, the fit against known parameters."""

from __future__ import annotations

import math
import random

import pytest

from adserver.core.value_record import ValueRecord
from adserver.value.models import (
    BgNbd,
    GammaGamma,
    History,
    ValueModel,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_value_model,
    hyp2f1,
    nelder_mead,
)
from adserver.value.synthetic import CALIBRATION_DAYS, TRUE_ORDERS, TRUE_SPEND, simulate


@pytest.mark.parametrize("z", [0.0, 0.1, 0.5, 0.9])
def test_hyp2f1_matches_its_closed_forms(z: float) -> None:
    log_form = -math.log(1 - z) / z if z else 1.0
    assert hyp2f1(1, 1, 2, z) == pytest.approx(log_form, rel=1e-9)
    assert hyp2f1(2.5, 3.0, 3.0, z) == pytest.approx((1 - z) ** -2.5, rel=1e-9)


def test_hyp2f1_refuses_z_outside_its_series() -> None:
    with pytest.raises(ValueError):
        hyp2f1(1, 1, 2, 1.0)


def test_nelder_mead_finds_the_minimum_of_rosenbrock() -> None:
    found = nelder_mead(lambda v: (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2, [-1.2, 1.0])
    assert found == pytest.approx([1.0, 1.0], abs=1e-3)


def test_expected_orders_of_a_new_shopper_match_the_models_own_simulation() -> None:
    model, rng, days, shoppers = (
        BgNbd(r=0.9, alpha=40.0, a=0.9, b=3.0),
        random.Random(3),
        200,
        40_000,
    )
    total = 0
    for _ in range(shoppers):
        rate = rng.gammavariate(model.r, 1 / model.alpha)
        dropout = rng.betavariate(model.a, model.b)
        t = rng.expovariate(rate)
        while t < days:
            total += 1
            if rng.random() < dropout:
                break
            t += rng.expovariate(rate)
    expected = model.expected_orders(History(0, 0, 0), days)
    assert expected == pytest.approx(total / shoppers, rel=0.05)


def test_a_shopper_silent_for_long_is_less_likely_alive_and_expected_to_order_less() -> None:
    model = TRUE_ORDERS
    recent = History(x=4, t_x=300, age=310)
    silent = History(x=4, t_x=100, age=310)
    assert model.p_alive(History(0, 0, 300)) == 1.0
    assert model.p_alive(silent) < model.p_alive(recent) <= 1.0
    assert model.expected_orders(silent) < model.expected_orders(recent)


def test_history_of_a_record() -> None:
    record = ValueRecord(first_day=100, last_day=160, orders=3, revenue_cents=9_000)
    assert History.of(record, today=200) == History(x=2, t_x=60, age=100)


def test_the_expected_order_value_shrinks_less_with_more_orders() -> None:
    spend = GammaGamma(p=6.0, q=4.0, gamma=1500.0)  # population mean 3000
    one, many = spend.expected_order_value(1, 9000.0), spend.expected_order_value(50, 9000.0)
    assert 3000 < one < many < 9000
    assert GammaGamma(1.0, 0.5, 10.0).expected_order_value(1, 9000.0) == 9000.0


def test_the_fit_recovers_the_parameters_of_a_synthetic_shop() -> None:
    records = [r for s in simulate(6_000, seed=7) if (r := s.record_until(CALIBRATION_DAYS))]
    histories = [History.of(r, CALIBRATION_DAYS) for r in records]
    orders = fit_bgnbd(histories)
    assert orders.r == pytest.approx(TRUE_ORDERS.r, rel=0.2)
    assert orders.alpha == pytest.approx(TRUE_ORDERS.alpha, rel=0.2)
    # a and b trade off against each other; the mean drop-out probability is what a fit pins
    true_dropout = TRUE_ORDERS.a / (TRUE_ORDERS.a + TRUE_ORDERS.b)
    assert orders.a / (orders.a + orders.b) == pytest.approx(true_dropout, rel=0.15)
    spend = fit_gamma_gamma((r.orders, r.mean_order_cents) for r in records)
    population = spend.p * spend.gamma / (spend.q - 1)
    true_population = TRUE_SPEND.p * TRUE_SPEND.gamma / (TRUE_SPEND.q - 1)
    assert population == pytest.approx(true_population, rel=0.1)
    assert spend.p == pytest.approx(TRUE_SPEND.p, rel=0.2)


def test_predicted_value_is_orders_times_order_value() -> None:
    model = ValueModel(TRUE_ORDERS, TRUE_SPEND)
    record = ValueRecord(first_day=0, last_day=300, orders=5, revenue_cents=15_000)
    expected = model.orders.expected_orders(History.of(record, 365)) * (
        model.spend.expected_order_value(5, 3_000)
    )
    assert model.predicted_value(record, 365) == pytest.approx(expected)
    assert model.predicted_value(record, 365, days=30) < model.predicted_value(record, 365)


def test_fitting_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        fit_value_model([], 0)
