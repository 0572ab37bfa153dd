import pytest

from search_space.budget import BudgetError, parse_budget


@pytest.mark.parametrize(
    "text,raw",
    [
        ("0.5GFLOPs", 2**29),
        ("500MFLOPs", 500 * 2**20),
        ("205.2M", round(205.2 * 2**20)),
        ("0.5G", 2**29),
        ("300M", 300 * 2**20),
        ("1.5gflops", round(1.5 * 2**30)),
        (" 7.1G ", round(7.1 * 2**30)),
        ("250MMACs", 250 * 2**20),
    ],
)
def test_budgets_parse_with_binary_prefixes(text, raw):
    assert parse_budget(text).raw == raw


@pytest.mark.parametrize(
    "text", ["", "0.5", "500", "half a G", "0.5GB", "5e8", "-1G", "0G", "G", "1.2.3M", "0.5 GFLOPS/s"]
)
def test_malformed_budgets_are_clear_errors(text):
    with pytest.raises(BudgetError, match="budget"):
        parse_budget(text)


def test_description_names_convention_and_divisor():
    text = parse_budget("0.5GFLOPs").describe("torchstat")
    assert "2^30" in text and "torchstat" in text and "536,870,912" in text
