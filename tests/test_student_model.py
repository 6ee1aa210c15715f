"""The Flax student (VGG-M + BN, paper Table 4) against its spec and an independent PyTorch twin.

Full-size model: only through `jax.eval_shape` (shapes, parameter count) plus one cheap init for the
initialiser statistics of conv1/conv2. Numerical comparisons with PyTorch use small widths; the
spatial geometry (512 frequency bins, pooling, 9x1 fc6) is the real one.

BatchNorm convention (flax 0.12.8 `nn.BatchNorm`): training normalises with the biased batch variance
(as torch does), and the running variance is updated with the *biased* batch variance,
`ra_var = 0.9 ra_var + 0.1 var_biased`; torch stores the *unbiased* one (`n / (n - 1)` times larger,
n = batch * H * W). The running means agree exactly; the variances after the n/(n-1) correction.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmemo_jax import losses
from cmemo_jax.models.student import Student

torch = pytest.importorskip("torch")

import torch_student as ts  # noqa: E402 - tests/ is on sys.path; needs torch, imported above

torch.set_num_threads(2)

SMALL = dict(conv_features=(8, 16, 16, 16, 16), fc6_features=32, fc7_features=16, num_classes=8)
BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6")


def _pool(n, k, s):
    return (n - k) // s + 1


def _conv(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _sizes(freq, time):
    f = _pool(_pool(_conv(_pool(_conv(freq, 7, 2, 1), 3, 2), 5, 2, 1), 3, 2), 5, 3)
    t = _pool(_pool(_conv(_pool(_conv(time, 7, 2, 1), 3, 2), 5, 2, 1), 3, 2), 3, 2)
    return f, t


def _analytic_param_count(conv_features, fc6=4096, fc7=1024, classes=8):
    cin = [1] + list(conv_features[:-1])
    kernels = [7, 5, 3, 3, 3]
    n = 0
    for k, ci, co in zip(kernels, cin, conv_features):
        n += k * k * ci * co + co  # conv weight + bias
        n += 2 * co  # BN scale + shift
    n += 9 * 1 * conv_features[-1] * fc6 + fc6 + 2 * fc6  # fc6 (9x1 conv) + BN
    n += fc6 * fc7 + fc7 + 2 * fc7  # fc7 + BN
    n += fc7 * classes + classes  # fc8
    return n


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _abstract_init(model, time, batch=2, freq=512):
    x = jnp.zeros((batch, freq, time), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


# ----------------------------------------------------------------------------- shapes / params


@pytest.mark.parametrize("frames", [300, 400, 1000])
def test_full_model_output_shape(frames):
    model = Student()
    variables = _abstract_init(model, frames, batch=3)
    x = jax.ShapeDtypeStruct((3, 512, frames), jnp.float32)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert out.shape == (3, 8) and out.dtype == jnp.float32
    out_train, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    assert out_train.shape == (3, 8)
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(
        variables["batch_stats"])


def test_intermediate_sizes_400_frames():
    model = Student()
    variables = _abstract_init(model, 400)
    x = jax.ShapeDtypeStruct((2, 512, 400), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), variables, x)
    inter = state["intermediates"]
    # Documented feature-map sizes (module docstring): conv outputs before pooling, then the blocks'
    # outputs (conv1, conv2 and conv5 blocks end in their max pool).
    assert inter["conv1"]["conv"]["__call__"][0].shape == (2, 254, 198, 96)
    assert inter["conv1"]["__call__"][0].shape == (2, 126, 98, 96)
    assert inter["conv2"]["conv"]["__call__"][0].shape == (2, 62, 48, 256)
    assert inter["conv2"]["__call__"][0].shape == (2, 30, 23, 256)
    assert inter["conv5"]["conv"]["__call__"][0].shape == (2, 30, 23, 256)
    assert inter["conv5"]["__call__"][0].shape == (2, 9, 11, 256)  # mpool5
    assert inter["fc6"]["__call__"][0].shape == (2, 1, 11, 4096)
    assert _sizes(512, 400) == (9, 11)


def test_mpool5_matches_torch_geometry():
    """The PyTorch twin's mpool5 has the same 9x11 map for 400 frames (independent pooling code)."""
    model = ts.TorchStudent(**SMALL).eval()
    x = torch.zeros(1, 512, 400)
    with torch.no_grad():
        y = torch.nn.functional.max_pool2d(model.conv1(x.unsqueeze(1)), 3, 2)
        y = torch.nn.functional.max_pool2d(model.conv2(y), 3, 2)
        y = model.conv5(model.conv4(model.conv3(y)))
        y = torch.nn.functional.max_pool2d(y, (5, 3), (3, 2))
    assert tuple(y.shape[2:]) == (9, 11)


def test_input_validation():
    model = Student()
    # 65 frames is the shortest input that leaves one mpool5 column.
    assert _sizes(512, 65)[1] == 1 and _sizes(512, 64)[1] == 0
    _abstract_init(model, 65)
    for frames in (20, 64):
        with pytest.raises(ValueError, match="frames"):
            _abstract_init(model, frames)
    for freq in (256, 600):
        with pytest.raises(ValueError):
            _abstract_init(model, 400, freq=freq)
    with pytest.raises(ValueError):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((512, 400))))
    tmodel = ts.TorchStudent(**SMALL).eval()
    assert tmodel(torch.zeros(1, 512, 65)).shape == (1, 8)
    for shape in ((1, 512, 20), (1, 512, 64), (1, 256, 400)):
        with pytest.raises(ValueError):
            tmodel(torch.zeros(shape))


@pytest.mark.parametrize("conv3, expected", [(256, 16_046_984), (384, None)])
def test_parameter_count(conv3, expected):
    conv = (96, 256, conv3, 256, 256)
    model = Student(conv_features=conv)
    variables = _abstract_init(model, 400)
    analytic = _analytic_param_count(conv)
    if expected is not None:
        assert analytic == expected
    assert _count(variables["params"]) == analytic
    # Running mean + var for each of the 6 conv-BN layers and fc7's BN.
    assert _count(variables["batch_stats"]) == 2 * (sum(conv) + 4096 + 1024)
    # The torch twin has the same number of trainable parameters.
    tmodel = ts.TorchStudent(conv_features=conv)
    assert sum(p.numel() for p in tmodel.parameters()) == analytic


def test_init_statistics():
    # conv1/conv2 at full width; the rest narrow (their init does not depend on later layers).
    model = Student(conv_features=(96, 256, 16, 16, 16), fc6_features=32, fc7_features=16)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 512, 65)))
    params, stats = variables["params"], variables["batch_stats"]
    for name, fan_in in (("conv1", 7 * 7 * 1), ("conv2", 5 * 5 * 96), ("conv3", 3 * 3 * 256)):
        k = np.asarray(params[name]["conv"]["kernel"])
        assert abs(k.std() / math.sqrt(2.0 / fan_in) - 1) < 0.05, name
        assert abs(k.mean()) < 0.05 * math.sqrt(2.0 / fan_in), name
    k = np.asarray(params["fc7"]["kernel"])
    assert abs(k.std() / math.sqrt(2.0 / 32) - 1) < 0.1
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(leaf_path)
        assert leaf.dtype == jnp.float32
        if name.endswith("['bias']"):
            np.testing.assert_array_equal(leaf, 0.0, err_msg=name)
        if name.endswith("['scale']"):
            np.testing.assert_array_equal(leaf, 1.0, err_msg=name)
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(stats):
        name = jax.tree_util.keystr(leaf_path)
        np.testing.assert_array_equal(leaf, 0.0 if name.endswith("['mean']") else 1.0, err_msg=name)


# ----------------------------------------------------------------------------- vs PyTorch


def _randomise(variables, seed=1):
    """Non-trivial BN scale/shift and running statistics (so eval mode tests them)."""
    rng = np.random.default_rng(seed)

    def bn_params(p):
        return {"scale": jnp.asarray(rng.uniform(0.5, 1.5, p["scale"].shape), jnp.float32),
                "bias": jnp.asarray(rng.normal(0, 0.2, p["bias"].shape), jnp.float32)}

    def bn_stats(s):
        return {"mean": jnp.asarray(rng.normal(0, 0.3, s["mean"].shape), jnp.float32),
                "var": jnp.asarray(rng.uniform(0.5, 2.0, s["var"].shape), jnp.float32)}

    params = jax.tree_util.tree_map(lambda x: x, variables["params"])
    stats = jax.tree_util.tree_map(lambda x: x, variables["batch_stats"])
    params = dict(params)
    stats = dict(stats)
    for name in BLOCKS:
        params[name] = dict(params[name], bn=bn_params(params[name]["bn"]))
        stats[name] = {"bn": bn_stats(stats[name]["bn"])}
    params["fc7_bn"] = bn_params(params["fc7_bn"])
    stats["fc7_bn"] = bn_stats(stats["fc7_bn"])
    for name in ("fc7", "fc8"):  # non-zero biases
        params[name] = dict(params[name], bias=jnp.asarray(rng.normal(0, 0.1, params[name]["bias"].shape),
                                                           jnp.float32))
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def small_setup():
    model = Student(**SMALL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 512, 100)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.key(42), jnp.zeros((1, 512, 100)))
    variables = _randomise(variables)
    tmodel = ts.copy_flax_params(ts.TorchStudent(**SMALL), variables)
    return model, variables, tmodel, x


def _assert_close_scaled(a, b, rtol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-6)
    err = np.abs(a - b).max()
    assert err <= rtol * scale, f"max abs diff {err:.3g} vs scale {scale:.3g}"


def test_copy_flax_params_roundtrip(small_setup):
    _, variables, tmodel, _ = small_setup
    k = np.asarray(variables["params"]["conv2"]["conv"]["kernel"])  # HWIO
    w = tmodel.conv2.conv.weight.detach().numpy()  # OIHW
    np.testing.assert_array_equal(w[3, 5, 1, 4], k[1, 4, 5, 3])
    np.testing.assert_array_equal(tmodel.fc8.weight.detach().numpy(), np.asarray(variables["params"]["fc8"]["kernel"]).T)
    np.testing.assert_array_equal(tmodel.fc6.bn.running_var.numpy(),
                                  np.asarray(variables["batch_stats"]["fc6"]["bn"]["var"]))


def test_eval_matches_torch(small_setup):
    model, variables, tmodel, x = small_setup
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    tmodel.eval()
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape == (4, 8)
    assert np.abs(ref).max() > 1e-2  # non-degenerate output
    _assert_close_scaled(out, ref, 1e-4)


def test_train_matches_torch_outputs_and_running_stats(small_setup):
    model, variables, _, x = small_setup
    tmodel = ts.copy_flax_params(ts.TorchStudent(**SMALL), variables).train()
    # Record n = elements per channel that each torch BN reduces over.
    counts = {}

    def hook(name):
        def f(module, inputs):
            counts[name] = inputs[0].numel() // inputs[0].shape[1]
        return f

    for name in BLOCKS:
        getattr(tmodel, name).bn.register_forward_pre_hook(hook(name))
    tmodel.fc7_bn.register_forward_pre_hook(hook("fc7_bn"))

    out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    _assert_close_scaled(out, ref, 1e-4)

    new = updates["batch_stats"]
    old = variables["batch_stats"]
    f, t = _sizes(512, 100)
    assert counts["fc7_bn"] == 4 and counts["fc6"] == 4 * 1 * t and f == 9
    for name in BLOCKS + ("fc7_bn",):
        tbn = tmodel.fc7_bn if name == "fc7_bn" else getattr(tmodel, name).bn
        fnew = new[name] if name == "fc7_bn" else new[name]["bn"]
        fold = old[name] if name == "fc7_bn" else old[name]["bn"]
        mean_f = np.asarray(fnew["mean"], np.float64)
        np.testing.assert_allclose(tbn.running_mean.numpy(), mean_f, rtol=1e-4,
                                   atol=1e-4 * max(np.abs(mean_f).max(), 1e-3), err_msg=name)
        # flax: ra = 0.9 ra + 0.1 var_biased;  torch: ra = 0.9 ra + 0.1 var_biased * n / (n - 1).
        n = counts[name]
        var_old = np.asarray(fold["var"], np.float64)
        var_f = np.asarray(fnew["var"], np.float64)
        batch_var_biased = (var_f - 0.9 * var_old) / 0.1
        expected_torch = 0.9 * var_old + 0.1 * batch_var_biased * n / (n - 1)
        np.testing.assert_allclose(tbn.running_var.numpy(), expected_torch, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected_torch).max(), err_msg=name)
    # The convention difference is real: for fc7_bn (n = 4) the raw running variances differ by ~4/3.
    tv = tmodel.fc7_bn.running_var.numpy().astype(np.float64)
    fv = np.asarray(new["fc7_bn"]["var"], np.float64)
    assert not np.allclose(tv, fv, rtol=1e-3)


def test_gradients_match_torch(small_setup):
    model, variables, _, x = small_setup
    rng = np.random.default_rng(5)
    teacher = (3.0 * rng.standard_normal((4, 8))).astype(np.float32)

    def loss_fn(params):
        logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                                mutable=["batch_stats"])
        return jnp.mean(losses.distillation_loss(logits, teacher, 2.0))

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])

    tmodel = ts.copy_flax_params(ts.TorchStudent(**SMALL), variables).train()
    tloss = ts.distillation_loss_torch(tmodel(torch.from_numpy(x)), torch.from_numpy(teacher), T=2)
    tloss.backward()
    np.testing.assert_allclose(float(loss), float(tloss.detach()), rtol=1e-5)

    g_conv1 = np.asarray(grads["conv1"]["conv"]["kernel"]).transpose(3, 2, 0, 1)
    _assert_close_scaled(g_conv1, tmodel.conv1.conv.weight.grad.numpy(), 1e-3)
    _assert_close_scaled(np.asarray(grads["fc8"]["kernel"]).T, tmodel.fc8.weight.grad.numpy(), 1e-4)
    _assert_close_scaled(np.asarray(grads["fc8"]["bias"]), tmodel.fc8.bias.grad.numpy(), 1e-4)
    g_fc6 = np.asarray(grads["fc6"]["conv"]["kernel"]).transpose(3, 2, 0, 1)
    _assert_close_scaled(g_fc6, tmodel.fc6.conv.weight.grad.numpy(), 1e-3)
    assert np.abs(g_conv1).max() > 0


def test_distillation_loss_torch_matches_jax():
    rng = np.random.default_rng(3)
    s, t = rng.standard_normal((2, 6, 8)).astype(np.float32) * 3
    ref = float(jnp.mean(losses.distillation_loss(s, t, 2.0)))
    got = float(ts.distillation_loss_torch(torch.from_numpy(s), torch.from_numpy(t), T=2))
    assert abs(ref - got) < 1e-5


# ----------------------------------------------------------------------------- BN modes, dtype


def test_eval_independent_of_batch_train_depends(small_setup):
    model, variables, _, x = small_setup
    x2 = x.copy()
    x2[2:] = np.random.default_rng(9).standard_normal(x2[2:].shape) * 3 + 1
    ev = jax.jit(lambda v, x: model.apply(v, x, train=False))
    tr = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0])
    a, b = np.asarray(ev(variables, x)), np.asarray(ev(variables, x2))
    np.testing.assert_allclose(a[:2], b[:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ev(variables, x[:2])), a[:2], rtol=1e-5, atol=1e-5)
    a, b = np.asarray(tr(variables, x)), np.asarray(tr(variables, x2))
    assert np.abs(a[:2] - b[:2]).max() > 1e-3


def test_bfloat16_compute(small_setup):
    _, variables, _, x = small_setup
    x = x[:, :, :80]
    model32 = Student(**SMALL)
    model16 = Student(**SMALL, dtype=jnp.bfloat16)
    init16 = _abstract_init(model16, 80)
    for leaf in jax.tree_util.tree_leaves(init16):
        assert leaf.dtype == jnp.float32
    assert jax.tree_util.tree_structure(init16) == jax.tree_util.tree_structure(variables)

    def run(model):
        def f(v, x):
            ev = model.apply(v, x, train=False)
            tr, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
            return ev, tr, upd
        return jax.jit(f)(variables, x)

    ev32, tr32, _ = run(model32)
    ev16, tr16, upd16 = run(model16)
    for out16, out32 in ((ev16, ev32), (tr16, tr32)):
        assert out16.dtype == jnp.float32 and out16.shape == (4, 8)
        _assert_close_scaled(out16, out32, 0.1)
    for leaf in jax.tree_util.tree_leaves(upd16):
        assert leaf.dtype == jnp.float32
