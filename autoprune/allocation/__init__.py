"""How many channels each group keeps under a latency budget.

  saliency.py   each channel's worth, comparable across groups (what the knapsack spends its budget on)
  knapsack.py   HALP's latency-saliency knapsack: the most saliency that fits a predicted latency
  knobs.py      the search's knobs that move the knapsack's allocation
"""
