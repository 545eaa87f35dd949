"""The architecture description: parsing the official structure strings."""
import pytest

from genet_arch import (BatchNorm, Conv, ReLU, StructureError, SuperBlock, canonical_arch, get_arch,
                        parse_structure)
from genet_arch.variants import CARDS


def _params(arch):
    """Parameter count recomputed from the description alone (no framework)."""
    n = 0
    for layer in arch.leaves():
        if isinstance(layer, Conv):
            o, i, k, _ = layer.weight_shape
            n += o * i * k * k + (o if layer.bias else 0)
        elif isinstance(layer, BatchNorm):
            n += 2 * layer.channels
    return n + arch.classifier.in_features * arch.classifier.out_features + arch.classifier.out_features


@pytest.mark.parametrize("name", ["small", "normal", "large"])
def test_parameter_count_matches_published(name):
    assert _params(get_arch(name)) == CARDS[name].num_params


def test_bottleneck_unit_semantics():
    # SuperResK1DWK1(384,560,3,2,3.0,2) of GENet_small: mid is relative to OUT.
    block = get_arch("small").body[6]
    assert isinstance(block, SuperBlock) and block.kind == "K1DWK1"
    first, second = block.units
    convs = [l for l in first.branch if isinstance(l, Conv)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in convs] == [
        (384, 1680, 1, 1, 1), (1680, 1680, 3, 2, 1680), (1680, 560, 1, 1, 1)]
    assert [type(l) for l in first.branch] == [Conv, BatchNorm, ReLU, Conv, BatchNorm, ReLU, Conv, BatchNorm]
    assert first.shortcut[0].stride == 2 and (first.shortcut[0].in_channels, first.shortcut[0].out_channels) == (384, 560)
    # Later units: (out, out, stride 1) and no shortcut.
    assert (second.in_channels, second.stride, second.shortcut) == (560, 1, None)


def test_kxkx_stride_on_first_conv_and_k1kxk1_on_middle():
    small = get_arch("small")
    kxkx = small.body[3].units[0]
    assert [l.stride for l in kxkx.branch if isinstance(l, Conv)] == [2, 1]
    k1kxk1 = small.body[5].units[0]
    convs = [l for l in k1kxk1.branch if isinstance(l, Conv)]
    assert [c.stride for c in convs] == [1, 2, 1] and [c.groups for c in convs] == [1, 1, 1]
    assert convs[0].out_channels == round(384 * 0.25) == 96


def test_shortcut_only_when_shape_changes():
    # GENet_small stage 4 (560 -> 256, stride 1): channels change, so a shortcut.
    small = get_arch("small")
    assert small.body[7].units[0].shortcut is not None
    # GENet_large stage 5 (640 -> 640, stride 1): identity in every unit.
    large = get_arch("large")
    assert all(u.shortcut is None for u in large.body[7].units)
    assert len(large.body[7].units) == 4


def test_every_conv_padding_and_bias():
    for layer in get_arch("large").leaves():
        if isinstance(layer, Conv):
            assert layer.padding == (layer.kernel_size - 1) // 2 and not layer.bias
        if isinstance(layer, BatchNorm):
            assert layer.eps == 1e-5 and layer.momentum == 0.1


@pytest.mark.parametrize("alias,expected", [("GENet_large", "large"), ("gernet_s", "small"), (" Normal ", "normal")])
def test_aliases(alias, expected):
    assert canonical_arch(alias) == expected


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="unknown GENet arch 'huge'"):
        get_arch("huge")


@pytest.mark.parametrize("structure,message", [
    ("ConvKX(3,8,3,2) BN(9) AdaptiveAvgPool(9,1)", "takes 9 channels but the previous block gives 8"),
    ("ConvKX(3,8,3) AdaptiveAvgPool(8,1)", "ConvKX at character 0 takes 4 arguments, got 3"),
    ("Foo(3) AdaptiveAvgPool(3,1)", "unknown block 'Foo'"),
    ("ConvKX(3,8,3,2) BN(8)", "no AdaptiveAvgPool"),
    ("ConvKX(3,8,3,2) AdaptiveAvgPool(8,1) BN(8)", "follows AdaptiveAvgPool"),
    ("SuperResKXKX(3,8,3,2,x,1) AdaptiveAvgPool(8,1)", "expansion must be a number"),
    ("ConvKX(3,8,3,2) ???", "cannot parse structure at character 16"),
])
def test_malformed_structures(structure, message):
    with pytest.raises(StructureError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse_structure(structure, "test", 32)
