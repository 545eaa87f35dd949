"""BN folding: the algebra against a float64 recomputation, the fused layout
against the official fuse_bn() spec, fused models against the official outputs."""
import numpy as np
import paddle
import pytest
import torch

import paddle_genet
import torch_ref
from converters.table import fuse
from genet_arch import get_arch, naming
from parity.core.compare import compare
from parity.core.seeded import seeded_input, seeded_state

from .conftest import ARCHS, assert_matches_official, reference, spec_rows


def test_fold_matches_batchnorm_after_conv_in_float64():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    g, beta, m = (rng.standard_normal(6).astype(np.float32) for _ in range(3))
    v = rng.uniform(0.1, 3, 6).astype(np.float32)
    x = rng.standard_normal((2, 4, 7, 7))
    conv = torch.nn.functional.conv2d
    def t64(a):
        return torch.from_numpy(np.asarray(a, np.float64))

    def per_channel(a):
        return t64(a)[:, None, None]

    ref = conv(t64(x), t64(w), t64(b))  # conv then eval-mode BN, in float64
    ref = (ref - per_channel(m)) / torch.sqrt(per_channel(v) + 1e-5) * per_channel(g) + per_channel(beta)
    fw, fb = fuse.fold(w, b, g, beta, m, v, 1e-5)
    assert fw.dtype == fb.dtype == np.float32
    out = conv(t64(x), t64(fw), t64(fb))
    assert compare("folded", out.numpy(), ref.numpy()).rel_l2 < 1e-6
    _, fb0 = fuse.fold(w, None, g, beta, m, v, 1e-5)  # conv without bias
    np.testing.assert_allclose(fb0, fb - b * g / np.sqrt(v.astype(np.float64) + 1e-5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_layout_equals_official_fuse_bn_spec(arch):
    spec = [(k, s) for k, s, _ in spec_rows(f"official_{arch}_fused")]
    assert fuse.expected(arch, "fused") == spec
    # genet_arch.naming's 'fused' module paths agree with the spec, layer by layer.
    a = get_arch(arch)
    convs = [naming.layer_path(a, c, "fused") for c, _ in fuse.conv_bn_pairs(arch)]
    assert [k for k, _ in spec[:-2:2]] == [f"{c}.weight" for c in convs]
    assert [(k, tuple(v.shape)) for k, v in torch_ref.build(arch, fused=True).state_dict().items()] == spec


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_torch_model_reproduces_official_outputs(arch):
    model = torch_ref.build(arch, fused=True)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in fuse.fuse_state(seeded_state(arch), arch).items()},
                          strict=True)
    x = seeded_input(arch, 2)
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    # Judged against the float64 recomputation of the UNFOLDED weights, official float32 as the bar.
    assert_matches_official(arch, seeded_state(arch), x, out, reference(f"{arch}_logits.npy"))


def test_fused_paddle_model_reproduces_official_outputs():
    model = paddle_genet.build("small", fused=True)
    tensors = fuse.fuse_state(seeded_state("small"), "small", "paddle_fused")
    own = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in own.items()] == fuse.expected("small", "paddle_fused")
    for k, v in tensors.items():
        own[k].set_value(v)
    x = seeded_input("small", 2)
    with paddle.no_grad():
        out = model(paddle.to_tensor(x)).numpy()
    assert_matches_official("small", seeded_state("small"), x, out, reference("small_logits.npy"))

