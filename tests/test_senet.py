"""The Flax SE-ResNet-50 teacher and the converter of the authors' PyTorch weights, against an
independent PyTorch twin with the authors' parameter names (tests/torch_senet.py).

Every numerical comparison goes the user's way: random weights and BN statistics in the PyTorch
model -> torch.save to a .pth -> `cmemo_jax.convert.main` -> `cmemo_jax.export.load` -> eval forward.
One comparison runs the full model at 224x224; the others use width 8 at 64x64.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmemo_jax import convert, export
from cmemo_jax.constants import EMOTIONS
from cmemo_jax.models import registry
from cmemo_jax.models.senet import MEAN_RGB, SENet50, max_pool_ceil

torch = pytest.importorskip("torch")

import torch_senet as ts  # noqa: E402 - tests/ is on sys.path; needs torch, imported above

torch.set_num_threads(2)

SMALL = dict(width=8, stage_sizes=(1, 2, 1, 1))  # stage conv3_x has an identity-shortcut block
SMALL_SIZE, SMALL_FINAL_MAP = 64, 2              # 64 -> 32 -> 16 (ceil pool) -> 16, 8, 4, 2
TOLERANCE = 1e-4                                 # max |ours - torch| / max |torch|


def _images(seed, n, size):
    """`[n, size, size, 3]` float32 RGB pixels in 0-255."""
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def _to_torch(images):
    """NHWC 0-255 RGB -> the authors' model input: NCHW, mean-subtracted (their models leave the
    subtraction to the caller; ours does it inside)."""
    return torch.from_numpy((images - np.asarray(MEAN_RGB, np.float32)).transpose(0, 3, 1, 2).copy())


def _torch_model(head, seed=0, size=SMALL_SIZE, pool_size=SMALL_FINAL_MAP, **kwargs):
    model = ts.TorchSENet50(head=head, pool_size=pool_size, **kwargs)
    return ts.randomize_(model, _to_torch(_images(seed + 100, 2, size)), seed=seed).eval()


def _convert(tmp_path, torch_model, name="senet50_test_dag.pth"):
    """torch.save -> the converter's CLI entry -> cmemo_jax.export.load: (model, variables, meta)."""
    pth, out = str(tmp_path / name), str(tmp_path / "teacher.msgpack")
    torch.save(torch_model.state_dict(), pth)
    assert convert.main([f"--from={pth}", f"--to={out}"]) == 0
    return export.load(out)


def _relative_error(ours, ref):
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


def _analytic_num_params(stage_sizes=(3, 4, 6, 3), width=64, reduction=16, classes=8):
    """Weights + biases + BN scale/shift of SE-ResNet-50, counted layer by layer."""
    n = 7 * 7 * 3 * width + 2 * width                               # conv1_7x7_s2 + BN
    cin = width
    for s, blocks in enumerate(stage_sizes):
        mid, out = width * 2 ** s, 4 * width * 2 ** s
        hidden = out // reduction
        for b in range(blocks):
            n += cin * mid + 2 * mid                                # 1x1_reduce + BN
            n += 9 * mid * mid + 2 * mid                            # 3x3 + BN
            n += mid * out + 2 * out                                # 1x1_increase + BN
            n += (out * hidden + hidden) + (hidden * out + out)     # SE 1x1_down, 1x1_up (biases)
            if b == 0:
                n += cin * out + 2 * out                            # 1x1_proj + BN
            cin = out
    return n + cin * classes + classes                              # classifier


def test_full_size_matches_pytorch_and_counts_parameters(tmp_path):
    images = _images(0, 2, 224)
    tmodel = _torch_model("conv", size=224, pool_size=7)  # the authors' 7x7 pool5, 1x1-conv classifier
    with torch.no_grad():
        ref = tmodel(_to_torch(images)).numpy()
    model, variables, meta = _convert(tmp_path, tmodel, name="senet50_ferplus_dag.pth")

    assert isinstance(model, SENet50) and model.stage_sizes == (3, 4, 6, 3) and model.width == 64
    assert meta["kind"] == "teacher" and meta["source"] == "senet50_ferplus_dag.pth"
    assert meta["emotions"] == list(EMOTIONS)
    assert meta["input"] == {"size": 224, "channels": "RGB", "range": [0, 255], "mean_rgb": list(MEAN_RGB)}
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    assert n_params == _analytic_num_params() == sum(p.numel() for p in tmodel.parameters())
    assert n_params == 26_055_416  # SE-ResNet-50's 28.09 M with an 8-way instead of a 1000-way classifier

    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert logits.shape == (2, 8) and logits.dtype == jnp.float32
    assert _relative_error(logits, ref) < TOLERANCE


@pytest.fixture(scope="module")
def small_torch_models():
    return {head: _torch_model(head, seed=i, **SMALL) for i, head in enumerate(("conv", "linear"))}


@pytest.mark.parametrize("head", ["conv", "linear"])
def test_small_matches_pytorch_logits_and_features(tmp_path, small_torch_models, head):
    tmodel = small_torch_models[head]
    images = _images(1, 3, SMALL_SIZE)
    with torch.no_grad():
        ref, ref_features = tmodel(_to_torch(images)).numpy(), tmodel.features(_to_torch(images)).numpy()
    model, variables, _ = _convert(tmp_path, tmodel)

    assert registry.constructor_kwargs(model)["stage_sizes"] == list(SMALL["stage_sizes"])
    assert model.width == SMALL["width"] and model.se_reduction == 16
    logits, features = jax.jit(lambda v, x: (model.apply(v, x), model.apply(v, x, method="features")))(
        variables, images)
    assert features.shape == (3, model.num_features) == (3, 4 * SMALL["width"] * 8)
    assert features.dtype == jnp.float32
    assert _relative_error(logits, ref) < TOLERANCE
    assert _relative_error(features, ref_features) < TOLERANCE


def test_stem_pool_uses_ceil_mode():
    x = np.random.default_rng(2).standard_normal((1, 13, 112, 4)).astype(np.float32)
    ours = np.asarray(max_pool_ceil(jnp.asarray(x), 3, 2))
    ref = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, 2, ceil_mode=True)
    assert ours.shape == (1, 6, 56, 4)  # floor mode: 6 x 55
    np.testing.assert_array_equal(ours, ref.numpy().transpose(0, 2, 3, 1))


def _one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        convert.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _damaged(state_dict, fault):
    sd = dict(state_dict)
    if fault == "shape":
        sd["conv3_1_3x3.weight"] = torch.zeros(16, 16, 3, 1)
        return sd, "conv3_1_3x3.weight"
    if fault == "missing":
        del sd["conv4_1_1x1_up.bias"]
        return sd, "conv4_1_1x1_up.bias"
    if fault == "unexpected":
        sd["conv2_1_1x1_extra.weight"] = torch.zeros(1)
        return sd, "conv2_1_1x1_extra.weight"
    if fault == "not_tensors":
        return {"epoch": 3, "best_acc": 0.8}, "epoch"
    raise AssertionError(fault)


@pytest.mark.parametrize("fault", ["shape", "missing", "unexpected", "not_tensors"])
def test_converter_rejects_bad_state_dicts_in_one_line(tmp_path, capsys, small_torch_models, fault):
    state_dict, culprit = _damaged(small_torch_models["linear"].state_dict(), fault)
    pth, out = str(tmp_path / f"{fault}.pth"), str(tmp_path / "out.msgpack")
    torch.save(state_dict, pth)
    err = _one_line_error(capsys, [f"--from={pth}", f"--to={out}"])
    assert pth in err and culprit in err, err
    assert not os.path.exists(out)


def test_converter_rejects_other_files_and_wrong_class_count(tmp_path, capsys, small_torch_models):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip or pickle at all")
    listed = str(tmp_path / "list.pth")
    torch.save([torch.zeros(2)], listed)
    for path in (str(garbage), listed, str(tmp_path / "absent.pth")):
        err = _one_line_error(capsys, [f"--from={path}", f"--to={tmp_path / 'out.msgpack'}"])
        assert path in err, err
    good = str(tmp_path / "senet50_ft_dag.pth")
    torch.save({"state_dict": small_torch_models["conv"].state_dict()}, good)  # wrapped checkpoint
    err = _one_line_error(capsys, [f"--from={good}", f"--to={tmp_path / 'out.msgpack'}", "--num-classes=7"])
    assert good in err and "classifier.weight has 8 outputs" in err, err
    assert convert.main([f"--from={good}", f"--to={tmp_path / 'out.msgpack'}", "--num-classes=8"]) == 0


def test_identity_classifier_keeps_its_size_and_has_no_emotions():
    state_dict = {k: v.numpy() for k, v in ts.TorchSENet50(num_classes=11, head="conv", **SMALL).state_dict().items()}
    kwargs, variables = convert.convert_state_dict(state_dict, "senet50_ft_dag.pth")
    assert kwargs["num_classes"] == 11 and variables["params"]["classifier"]["kernel"].shape == (256, 11)
    assert "emotions" not in convert.teacher_meta(kwargs, "senet50_ft_dag.pth")


@pytest.fixture(scope="module")
def small_variables(small_torch_models):
    """(SENet50 kwargs, variables) of the small linear-head twin: well-conditioned weights without
    a jitted random init (XLA:CPU takes seconds to compile the threefry of every parameter)."""
    state_dict = {k: v.numpy() for k, v in small_torch_models["linear"].state_dict().items()}
    return convert.convert_state_dict(state_dict, "small.pth")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_init_gives_the_converted_tree_in_float32(small_variables, dtype):
    kwargs, converted = small_variables
    model = registry.build("teacher", {**kwargs, "dtype": dtype})
    rng = jax.random.PRNGKey(0)
    # As the shared trainer initialises; abstract, so nothing is computed.
    shapes = jax.eval_shape(lambda x: model.init({"params": rng, "dropout": rng}, x, train=False),
                            jax.ShapeDtypeStruct((1, SMALL_SIZE, SMALL_SIZE, 3), jnp.float32))
    assert jax.tree.structure(shapes) == jax.tree.structure(converted)
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, converted)
    assert {s.dtype for s in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}


def _train_apply(model):
    """The shared trainer's training call: (variables, images, seed) -> (logits, updates)."""
    return jax.jit(lambda v, x, seed: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                  rngs={"dropout": jax.random.PRNGKey(seed)}))


def test_dropout_only_in_training(small_variables):
    kwargs, variables = small_variables
    model = registry.build("teacher", kwargs)
    images = jnp.asarray(_images(3, 2, 32))
    train = _train_apply(model)

    a, updates = train(variables, images, 1)
    # Dropout is the model's only use of randomness: another rng, another mask, other logits.
    assert not np.allclose(a, train(variables, images, 2)[0])
    np.testing.assert_array_equal(a, train(variables, images, 1)[0])
    assert not np.allclose(updates["batch_stats"]["conv1_7x7_s2_bn"]["mean"],
                           variables["batch_stats"]["conv1_7x7_s2_bn"]["mean"])
    # Eval: deterministic, no rng needed, and not the training output.
    evaluate = jax.jit(model.apply)
    np.testing.assert_array_equal(evaluate(variables, images), evaluate(variables, images))
    assert not np.allclose(evaluate(variables, images), a)


def test_bfloat16_compute_keeps_float32_stats_and_logits(small_variables):
    kwargs, variables = small_variables
    images = _images(4, 2, 32)
    f32 = registry.build("teacher", kwargs)
    bf16 = registry.build("teacher", {**kwargs, "dtype": "bfloat16"})
    assert bf16.dtype == jnp.bfloat16

    logits, ref = jax.jit(lambda v, x: (bf16.apply(v, x), f32.apply(v, x)))(variables, images)
    assert logits.dtype == jnp.float32
    assert _relative_error(logits, np.asarray(ref)) < 0.05
    # Training: dtypes only (abstract evaluation; compiling bf16 dropout costs seconds on CPU).
    train_logits, updates = jax.eval_shape(_train_apply(bf16), variables, images, 0)
    assert train_logits.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(updates["batch_stats"])} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("model", [SENet50(), SENet50(num_classes=8631, stage_sizes=(1, 1), width=16,
                                                       dropout_rate=0.2, dtype=jnp.bfloat16)])
def test_registry_round_trip(model):
    kwargs = registry.constructor_kwargs(model)
    assert json.loads(json.dumps(kwargs)) == kwargs
    rebuilt = registry.build("teacher", kwargs)
    assert type(rebuilt) is SENet50 and registry.constructor_kwargs(rebuilt) == kwargs
    assert registry.kind_of(rebuilt) == "teacher"
    assert rebuilt.stage_sizes == tuple(model.stage_sizes) and jnp.dtype(rebuilt.dtype) == jnp.dtype(model.dtype)


def test_rejects_grey_or_tiny_images():
    model = SENet50(width=8, stage_sizes=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="RGB"):
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="at least 32x32"):
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 16, 16, 3)))
