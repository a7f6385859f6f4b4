"""The kernel signature, a latency table's key for one kernel: `op:cin>cout:hw:static:epilogue`.

This module is the format's one owner: it builds a key from a layer of the layout (layout.py) at given
channels, and parses keys back for the predictor (kernels of one family, equal but for channels, for
interpolation) and for the runner (depthwise kernels from dense ones, for the calibration). Standard
library only, no autoprune imports: the runner reads it on a device without autoprune, from the kit.
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
    def of(cls, layer: dict, cin: int, cout: int) -> Signature:
        """The kernel a layer of the layout runs at these channels: the static part holds every attribute
        that changes the kernel, so two layers share an entry exactly when they run the same kernel."""
        a = layer["attrs"]
        if layer["op"] == "conv":
            pad = a["padding"] if isinstance(a["padding"], str) else _dims(a["padding"])
            groups = "dw" if a["groups"] == "depthwise" else a["groups"]
            static = (f"k{_dims(a['kernel'])}s{_dims(a['stride'])}p{pad}d{_dims(a['dilation'])}g{groups}"
                      f"{'b' if a['bias'] else ''}")
        elif layer["op"] == "linear":
            static = "b" if a["bias"] else "nb"
        else:
            static = ",".join(f"{k}={_dims(v) if isinstance(v, list) else v}" for k, v in sorted(a.items()))
        return cls(layer["op"], cin, cout, _dims(layer["hw"]) or "-", static, layer["epilogue"])

    @classmethod
    def parse(cls, key: str) -> Signature:
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
        """Its channels pass through (depthwise convs, pools): cout is cin, and the cost grows with it,
        not with cin x cout."""
        return self.depthwise or self.op.endswith("pool")


def _dims(values) -> str:
    return "x".join(str(v) for v in values)
