"""Static MobileNetV3 layers with standard ops (grouped conv for depthwise) and JSON configs, OFA style."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from search_spaces.ofa_mbv3 import make_divisible

BN_EPS = 1e-5


def relu(x):
    return jnp.maximum(x, 0.0)


def hsigmoid(x):
    """relu6(x + 3) / 6, looked up at call time so jax2onnx exports it as one ONNX HardSigmoid."""
    return jax.nn.hard_sigmoid(x)


def hswish(x):
    """x * relu6(x + 3) / 6, exported as ONNX HardSwish (jax2onnx mis-lays-out the hand-written form)."""
    return jax.nn.hard_swish(x)


def identity(x):
    return x


ACTIVATIONS = {"relu": relu, "hswish": hswish, None: identity}


def _activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(k for k in ACTIVATIONS if k)} or None, got {name!r}")
    return ACTIVATIONS[name]


class ConvBNAct(nnx.Module):
    """k x k convolution (padding k//2 on each side, as PyTorch), optional batch norm, optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = None, use_bn: bool = True, bias: bool = False, *, rngs: nnx.Rngs):
        self.in_channels, self.out_channels, self.kernel, self.stride = in_channels, out_channels, kernel, stride
        self.groups, self.act, self.use_bn, self.bias = groups, act, use_bn, bias
        self._act = _activation(act)
        p = kernel // 2
        self.conv = nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride, padding=((p, p), (p, p)),
                             feature_group_count=groups, use_bias=bias, rngs=rngs)
        self.bn = nnx.BatchNorm(out_channels, momentum=0.9, epsilon=BN_EPS, rngs=rngs) if use_bn else None

    def __call__(self, x, train: bool = False):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=not train)
        return self._act(x)

    def to_config(self) -> dict:
        return {"name": "ConvBNAct", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel, "stride": self.stride, "groups": self.groups, "act": self.act,
                "use_bn": self.use_bn, "bias": self.bias}


class SqueezeExcite(nnx.Module):
    """x * hsigmoid(expand(relu(reduce(mean over H, W of x)))), reduce and expand with bias. The pooled features
    are 2-D (batch, channels), so an exported graph multiplies them without reshapes of the dynamic batch."""

    def __init__(self, channels: int, mid_channels: int | None = None, *, rngs: nnx.Rngs):
        self.channels = channels
        self.mid_channels = mid_channels or make_divisible(channels // 4, 8)
        self.reduce = nnx.Linear(channels, self.mid_channels, rngs=rngs)
        self.expand = nnx.Linear(self.mid_channels, channels, rngs=rngs)

    def __call__(self, x, train: bool = False):
        pooled = jnp.mean(x, axis=(1, 2))
        return x * jnp.expand_dims(hsigmoid(self.expand(relu(self.reduce(pooled)))), (1, 2))

    def to_config(self) -> dict:
        return {"name": "SqueezeExcite", "channels": self.channels, "mid_channels": self.mid_channels}


class MBConvBlock(nnx.Module):
    """Inverted bottleneck: 1x1 expand (absent when expand_channels == in_channels), depthwise k x k, SE, 1x1
    projection; identity shortcut when stride is 1 and in_channels == out_channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_channels: int,
                 act: str, se: bool, *, rngs: nnx.Rngs):
        self.in_channels, self.out_channels, self.kernel, self.stride = in_channels, out_channels, kernel, stride
        self.expand_channels, self.act, self.se = expand_channels, act, se
        mid = expand_channels
        self.expand = ConvBNAct(in_channels, mid, 1, act=act, rngs=rngs) if mid != in_channels else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act, rngs=rngs)
        self.squeeze_excite = SqueezeExcite(mid, rngs=rngs) if se else None
        self.project = ConvBNAct(mid, out_channels, 1, rngs=rngs)
        self.residual = stride == 1 and in_channels == out_channels

    def __call__(self, x, train: bool = False):
        h = x if self.expand is None else self.expand(x, train)
        h = self.depthwise(h, train)
        if self.squeeze_excite is not None:
            h = self.squeeze_excite(h)
        h = self.project(h, train)
        return h + x if self.residual else h

    def to_config(self) -> dict:
        return {"name": "MBConvBlock", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel, "stride": self.stride, "expand_channels": self.expand_channels,
                "act": self.act, "se": self.se}


class Classifier(nnx.Module):
    """Fully connected layer with bias on the pooled features."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

    def __call__(self, x, train: bool = False):
        return self.linear(x)

    def to_config(self) -> dict:
        return {"name": "Classifier", "in_features": self.in_features, "out_features": self.out_features}


LAYERS = {cls.__name__: cls for cls in (ConvBNAct, SqueezeExcite, MBConvBlock, Classifier)}


def layer_from_config(config: dict, *, rngs: nnx.Rngs):
    """Builds the layer a `to_config()` dict describes."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in LAYERS:
        raise ValueError(f"layer config name must be one of {sorted(LAYERS)}, got {name!r}")
    return LAYERS[name](**config, rngs=rngs)


class StaticMobileNetV3(nnx.Module):
    """First conv, MBConv blocks, final 1x1 expand, global pool, 1x1 feature mix (h-swish, no BN), classifier."""

    def __init__(self, config: dict, *, rngs: nnx.Rngs):
        self.first_conv = layer_from_config(config["first_conv"], rngs=rngs)
        self.blocks = nnx.List([layer_from_config(b, rngs=rngs) for b in config["blocks"]])
        self.final_expand = layer_from_config(config["final_expand"], rngs=rngs)
        self.feature_mix = layer_from_config(config["feature_mix"], rngs=rngs)
        self.classifier = layer_from_config(config["classifier"], rngs=rngs)

    @classmethod
    def from_config(cls, config: dict, *, rngs: nnx.Rngs) -> "StaticMobileNetV3":
        return cls(config, rngs=rngs)

    def to_config(self) -> dict:
        return {"name": "StaticMobileNetV3", "first_conv": self.first_conv.to_config(),
                "blocks": [b.to_config() for b in self.blocks], "final_expand": self.final_expand.to_config(),
                "feature_mix": self.feature_mix.to_config(), "classifier": self.classifier.to_config()}

    def __call__(self, x, train: bool = False):
        x = self.first_conv(x, train)
        for block in self.blocks:
            x = block(x, train)
        x = self.final_expand(x, train)
        x = self.feature_mix(jnp.mean(x, axis=(1, 2), keepdims=True), train)
        return self.classifier(jnp.squeeze(x, axis=(1, 2)))
