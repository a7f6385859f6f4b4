"""Model specs -> modules, their cost, and their deployed ONNX form.

  specs.py         model spec strings and checkpoints -> an nn.Module with the input it expects
  cifar_resnet.py  the CIFAR-10 ResNets (option-A shortcuts) the embedded default uses
  complexity.py    MACs and parameter counts (fvcore)
  onnx_io.py       ONNX export and ONNX Runtime sessions
"""
