"""How many channels each group keeps under a latency budget.

  saliency.py   each channel's worth, comparable across groups (what the knapsack spends its budget on)
  knapsack.py   HALP's latency-saliency knapsack: the most saliency that fits a predicted latency
  widths.py     what the search samples: a width per group (shares per stage, offsets per group), repaired to a budget
  rules.py      the rules a search starts from: uniform widths, the one-shot knapsack
"""
