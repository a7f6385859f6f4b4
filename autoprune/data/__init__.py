"""The data a search and an export need, whoever supplies it.

  task.py      TaskData: what the search and export ask of a task's data (splits, loss, score)
  sources.py   the built-in image sources (shipped CIFAR-10 subset, CIFAR-10, ImageFolder) and their splits
  user.py      the user's own Dataset or DataLoader and metric
"""
