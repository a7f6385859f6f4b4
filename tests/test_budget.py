import pytest

from autoprune.budget import parse_budget
from autoprune.errors import AutopruneError, BudgetError


@pytest.mark.parametrize(
    "text, unpruned, ms",
    [("30ms", 80.0, 30.0), ("500us", 80.0, 0.5), ("0.03s", 80.0, 30.0), ("0.5x", 80.0, 40.0), (" 2.5 MS ", 1.0, 2.5)],
)
def test_budget_syntax(text, unpruned, ms):
    assert parse_budget(text).to_ms(unpruned) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "30", "fast", "30 mins", "-1ms", "0x", "1e3ms", "x0.5"])
def test_malformed_budgets(text):
    with pytest.raises(AutopruneError, match="bad budget"):
        parse_budget(text)


def test_margins_from_numbers_and_from_a_tables_held_out_error():
    from autoprune.budget import error_band, margin_share

    assert margin_share("0", None) == 0 and margin_share("5%", None) == pytest.approx(0.05)
    assert margin_share(0.1, None) == pytest.approx(0.1)
    for bad in ("x", "-1%", "1.5", "100%"):
        with pytest.raises(BudgetError, match="bad margin"):
            margin_share(bad, None)
    with pytest.raises(BudgetError, match="needs the table's held-out validation"):
        margin_share("auto", None)
    # 20 configs measured 0%..19% over their prediction: auto covers 95% of them.
    validation = {"predicted_ms": [1.0] * 20, "measured_ms": [1 + i / 100 for i in range(20)]}
    assert error_band(validation) == pytest.approx((1.01, 1.18))
    assert margin_share("auto", validation) == pytest.approx(0.18)
    # A table that over-predicts everything needs no margin.
    assert margin_share("auto", {"predicted_ms": [2.0] * 5, "measured_ms": [1.0] * 5}) == 0


def test_the_knapsack_stays_under_the_budget_by_the_margin(capsys):
    from autoprune.cli import main

    assert main(["knapsack", "--budget", "0.5x", "--saliency", "l1", "--margin", "10%"]) == 0
    line = capsys.readouterr().err
    predicted, target, budget = (float(line.split(word)[1].split()[0]) for word in ("predicted ", "target ", "budget "))
    assert target == pytest.approx(budget / 1.1, abs=1e-3) and predicted <= target
