"""The kernel signature, a latency table's key for one kernel: `op:cin>cout:hw:static:epilogue`.

Built by layout.py from a layer, read back by the predictor (to find kernels of one family, equal but for
channels, for interpolation) and by the runner (to tell depthwise kernels from dense ones for the
calibration). Standard library only: the runner reads it on a device without autoprune, from the kit.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    op: str  # conv, linear, maxpool, avgpool, ...
    cin: int
    cout: int
    hw: str  # input height x width, "-" for none
    static: str  # kernel, stride, padding, dilation, groups ("gdw" for depthwise), bias
    epilogue: str  # what the runtime fuses after it (activation, residual add)

    def __str__(self) -> str:
        return f"{self.op}:{self.cin}>{self.cout}:{self.hw}:{self.static}:{self.epilogue}"

    @classmethod
    def parse(cls, key: str) -> "Signature":
        op, channels, hw, static, epilogue = key.split(":", 4)
        cin, cout = channels.split(">")
        return cls(op, int(cin), int(cout), hw, static, epilogue)

    @property
    def family(self) -> tuple[str, str, str, str]:
        """Everything but the channels: kernels of one family differ only in width."""
        return self.op, self.hw, self.static, self.epilogue

    @property
    def depthwise(self) -> bool:
        return self.op == "conv" and "gdw" in self.static

    @property
    def scales_with_channels(self) -> bool:
        """Its cost grows with the channel count (depthwise convs, pools), not with cin x cout."""
        return self.depthwise or self.op.endswith("pool")
