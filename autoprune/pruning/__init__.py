"""Channel pruning: which channels are coupled, which widths a model may take, and removing channels exactly.

  graph.py         torch-pruning's dependency graph, with autoprune's own layers and refusals explained
  pruners.py       pruners torch-pruning lacks (the CIFAR ResNets' option-A shortcut)
  space.py         SearchSpace: the prunable channel groups and the kept counts each may take
  importance.py    every channel-importance criterion, in one registry
  prune.py         a config -> a physically smaller copy of the model
  verify.py        the exactness check: pruning silenced channels must not change the output
  pruned_files.py  pruned models on disk, weights_only-safe
"""
