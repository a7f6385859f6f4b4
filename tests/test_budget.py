import pytest

from autoprune.budget import parse_budget
from autoprune.errors import AutopruneError


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
