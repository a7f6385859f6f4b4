"""Training and scoring pruned models.

  finetune.py   the fine-tune (SGD, cosine, distillation) with resumable checkpoints
  proxies.py    cheap accuracy proxies and their ladders (adaptive-bn, finetune:K)
  schedule.py   when channels go: one-shot, or progressively while the fine-tune trains
"""
