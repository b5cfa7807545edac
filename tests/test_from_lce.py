"""from_lce: Larq Compute Engine models imported and run on every profile give LCE's outputs
(issue 15). The models and LCE's own outputs on fixed MNIST inputs were made by
training/make_lce_models.py (Larq, LCE 0.16, TensorFlow 2.16, in a virtual environment of
their own); no TensorFlow here. Refusals edit a parsed model before it is walked."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite")
pytest.importorskip("flatbuffers")

import espresso_cl as ec  # noqa: E402
from espresso_cl import import_lce  # noqa: E402
from espresso_cl.import_lce import LceFileError, from_lce  # noqa: E402
from espresso_cl.importing import UnsupportedModelError  # noqa: E402
from espresso_cl.reference.network import forward  # noqa: E402

DATA = Path(__file__).parent / "data" / "lce"
MODELS = sorted(p.stem for p in DATA.glob("*.tflite"))
# Float outputs: LCE computes float(2p) * -m + (b + K m) in float32, espresso_cl acc * m + b;
# both round differently, by a few float32 ulps of the largest value in the chain.
FLOAT_ULPS = 64


def load(name):
    data = np.load(DATA / f"{name}.npz")
    return data["inputs"], data["outputs"]


def test_the_committed_models_cover_every_mapped_operator():
    assert len(MODELS) >= 5
    found = set()
    for name in MODELS:
        graph = import_lce._Graph((DATA / f"{name}.tflite").read_bytes())
        found |= {op.name for op in graph.operators}
        for op in graph.operators:
            if op.name == "LceBconv2d":
                found.add(("pad_values", op.options["pad_values"], "padding", op.options["padding"],
                           "stride", op.options["stride_height"],
                           "output", "packed" if graph.types[op.outputs[0]] == import_lce.INT32 else "float"))
    assert set(import_lce.HANDLERS) <= found
    options = {f for f in found if isinstance(f, tuple)}
    assert {o[1] for o in options if o[3] == import_lce.SAME} == {0, 1}  # zero- and one-padding
    assert {o[5] for o in options} >= {1, 2} and {o[7] for o in options} == {"packed", "float"}


@pytest.mark.parametrize("name", MODELS)
def test_models_give_lce_outputs_on_every_profile(profiled_runtime, name):
    inputs, theirs = load(name)
    model = from_lce(DATA / f"{name}.tflite", runtime=profiled_runtime)
    assert model.input_shape == inputs.shape[1:]
    ours = model.predict(inputs)
    assert ours.shape == theirs.shape
    if np.all(np.abs(theirs) == 1):  # a sign output: bit-exact
        np.testing.assert_array_equal(ours, theirs)
    else:
        tolerance = FLOAT_ULPS * np.finfo(np.float32).eps * max(1.0, float(np.abs(theirs).max()))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance)
    np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))


@pytest.mark.parametrize("name", MODELS)
def test_reference_and_float_mode_give_lce_classes(runtime, name):
    """The NumPy reference of the imported layers (float64) and the float32 mode agree too."""
    inputs, theirs = load(name)
    model = from_lce((DATA / f"{name}.tflite").read_bytes(), runtime=runtime)
    reference = np.asarray(forward(model.layers, inputs), np.float64)
    tolerance = FLOAT_ULPS * np.finfo(np.float32).eps * max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(reference, theirs, rtol=0, atol=tolerance)
    np.testing.assert_allclose(model.predict(inputs, mode="float"), theirs, rtol=0, atol=tolerance)


def test_no_tensorflow_is_imported():
    from_lce(DATA / f"{MODELS[0]}.tflite")
    assert "tensorflow" not in sys.modules and "larq" not in sys.modules


def test_binary_dense_as_1x1_conv_becomes_binary_dense():
    model = from_lce(DATA / "dense_as_conv.tflite")
    assert [l.type_name for l in model.layers].count("binary_dense") == 2
    assert not any(l.type_name == "binary_conv2d" for l in model.layers)


def test_one_padding_and_packed_thresholds_are_kept():
    model = from_lce(DATA / "conv_one_pad.tflite")
    pads = [l.pad_value for l in model.layers if l.type_name == "binary_conv2d"]
    assert pads[:2] == ["one", "one"]


def test_a_sign_after_a_flatten_goes_before_it():
    """RESHAPE -> LceQuantize: the sign goes in front of the flatten, next to its batch-norm,
    so the two fold into thresholds (as BinaryNet's own layer order)."""
    model = from_lce(DATA / "conv_one_pad.tflite")
    assert kinds(model, -6, -3) == ["batch_norm", "sign", "flatten"]


def kinds(model, start, stop):
    return [layer.type_name for layer in model.layers[start:stop]]


def test_max_pool_moves_in_front_of_a_non_decreasing_affine_only(edited):
    """bconv (float output) -> MAX_POOL_2D -> MUL -> ADD -> LceQuantize: with multipliers >= 0
    the pool goes first and the two affines join (one threshold); with a negative one the
    max would become a min, so the order stays."""
    assert kinds(from_lce(DATA / "conv_one_pad.tflite"), 2, 6) == ["binary_conv2d", "maxpool2d", "batch_norm", "sign"]

    def negative_multiplier(graph):
        tensor = op_named(graph, "LceBconv2d").inputs[2]
        value = graph.constants[tensor].copy()
        value[3] = -value[3]
        graph.constants[tensor] = value
    model = edited("conv_one_pad", negative_multiplier)
    assert kinds(model, 2, 7) == ["binary_conv2d", "batch_norm", "maxpool2d", "batch_norm", "sign"]


# -- refusals ---------------------------------------------------------------------------------
@pytest.fixture
def edited(monkeypatch):
    """from_lce on a committed model after ``edit(graph)`` changed the parsed graph."""
    def run(name, edit):
        parse = import_lce._Graph._parse

        def parse_and_edit(graph):
            parse(graph)
            edit(graph)
        monkeypatch.setattr(import_lce._Graph, "_parse", parse_and_edit)
        return from_lce(DATA / f"{name}.tflite")
    return run


def op_named(graph, name, nth=0):
    return [op for op in graph.operators if op.name == name][nth]


def set_option(name, key, value, nth=0):
    def edit(graph):
        op_named(graph, name, nth).options[key] = value
    return edit


class FakeOptions:
    def __init__(self, real, **changes):
        self.real, self.changes = real, changes

    def __getattr__(self, key):
        if key in self.changes:
            return lambda: self.changes[key]
        return getattr(self.real, key)


def builtin_option(op_name, **changes):
    def edit(graph):
        op = op_named(graph, op_name)
        real = op.builtin_options
        op.builtin_options = lambda cls: FakeOptions(real(cls), **changes)
    return edit


def retype(position: str, op_name: str, tensor_type: int):
    def edit(graph):
        op = op_named(graph, op_name)
        tensor = op.outputs[0] if position == "output" else op.inputs[0]
        graph.types[tensor] = tensor_type
    return edit


def rename(op_name, new_name):
    def edit(graph):
        op_named(graph, op_name).name = new_name
    return edit


def branch(graph):
    op = op_named(graph, "SOFTMAX")
    op.inputs = [op.inputs[0] - 1]  # reads an earlier tensor, not the previous operator's output


REFUSALS = {
    "dilated bconv": ("conv_one_pad", set_option("LceBconv2d", "dilation_height_factor", 2),
                      r"operator 2 \(LceBconv2d\): dilation"),
    "bconv activation": ("conv_one_pad", set_option("LceBconv2d", "fused_activation_function", 1),
                         r"operator 2 \(LceBconv2d\): fused activation"),
    "grouped bconv": ("conv_one_pad", set_option("LceBconv2d", "channels_in", 64, nth=1),
                      r"operator 7 \(LceBconv2d\): grouped"),
    "channels_in": ("conv_one_pad", set_option("LceBconv2d", "channels_in", 17),
                    r"operator 2 \(LceBconv2d\): channels_in 17, but it reads 16"),
    "pad_values": ("conv_one_pad", set_option("LceBconv2d", "pad_values", 2), r"operator 2 \(LceBconv2d\): pad_values 2"),
    "zero-padded packed output": ("conv_one_pad", set_option("LceBconv2d", "pad_values", 0, nth=1),
                                  r"operator 7 \(LceBconv2d\): packed output with zero padding"),
    "strides": ("conv_one_pad", set_option("LceBconv2d", "stride_width", 1, nth=1),
                r"operator 7 \(LceBconv2d\): strides \(2, 1\)"),
    "bmaxpool padding": ("conv_zero_pad", set_option("LceBMaxPool2d", "padding", 5),
                         r"operator 4 \(LceBMaxPool2d\): padding 5"),
    "int8 output": ("conv_one_pad", retype("output", "CONV_2D", 9), r"operator 0 \(CONV_2D\): .*int8"),
    "int8 bconv output": ("conv_one_pad", retype("output", "LceBconv2d", 9), r"operator 2 \(LceBconv2d\): .*int8"),
    "unknown operator": ("conv_one_pad", rename("SOFTMAX", "TANH"), r"operator 13 \(TANH\): .*no mapping"),
    "branch": ("conv_one_pad", branch, r"operator 13 \(SOFTMAX\): reads tensors"),
    "conv activation": ("conv_one_pad", builtin_option("CONV_2D", FusedActivationFunction=1),
                        r"operator 0 \(CONV_2D\): fused activation"),
    "conv dilation": ("conv_one_pad", builtin_option("CONV_2D", DilationHFactor=2), r"operator 0 \(CONV_2D\): dilation"),
    "dense activation": ("conv_one_pad", builtin_option("FULLY_CONNECTED", FusedActivationFunction=3),
                         r"operator 12 \(FULLY_CONNECTED\): fused activation"),
    "softmax beta": ("conv_one_pad", builtin_option("SOFTMAX", Beta=2.0), r"operator 13 \(SOFTMAX\): beta 2"),
    "pool activation": ("conv_one_pad", builtin_option("MAX_POOL_2D", FusedActivationFunction=1),
                        r"operator 3 \(MAX_POOL_2D\): fused activation"),
    "pad before a pool": ("pad_pool_same", rename("CONV_2D", "MAX_POOL_2D"), r"operator 0 \(PAD\): a PAD feeds"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_operator(edited, case):
    name, edit, message = REFUSALS[case]
    with pytest.raises(UnsupportedModelError, match=message):
        edited(name, edit)


def test_mul_by_a_non_channel_constant_is_refused(edited):
    def edit(graph):
        op = op_named(graph, "MUL")
        graph.constants[op.inputs[1]] = np.ones((3, 32), np.float32)
    with pytest.raises(UnsupportedModelError, match=r"operator 4 \(MUL\): an operand of shape \(3, 32\)"):
        edited("conv_one_pad", edit)


def test_float_bconv_without_multiplier_is_refused(edited):
    def edit(graph):
        op_named(graph, "LceBconv2d").inputs[2] = -1
    with pytest.raises(UnsupportedModelError, match=r"operator 2 \(LceBconv2d\): has no post_activation_multiplier"):
        edited("conv_one_pad", edit)


def test_int8_input_is_refused(edited):
    def edit(graph):
        graph.types[graph.inputs[0]] = 9
    with pytest.raises(UnsupportedModelError, match="model input is int8"):
        edited("conv_one_pad", edit)


# -- bad files ----------------------------------------------------------------------------------
def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "x.tflite"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 4)
    with pytest.raises(LceFileError, match="not a TensorFlow Lite flatbuffer"):
        from_lce(path)
    with pytest.raises(LceFileError, match="not a TensorFlow Lite flatbuffer"):
        from_lce(b"")
    with pytest.raises(TypeError, match="path or its bytes"):
        from_lce(12)
    with pytest.raises(FileNotFoundError):
        from_lce(tmp_path / "missing.tflite")


@pytest.mark.parametrize("keep", [12, 200, 0.5, 0.9])
def test_truncated_files_raise_a_clear_error(keep):
    data = (DATA / "conv_one_pad.tflite").read_bytes()
    cut = data[:keep if isinstance(keep, int) else int(len(data) * keep)]
    with pytest.raises((LceFileError, UnsupportedModelError)) as info:
        from_lce(cut)
    assert "truncated or corrupt" in str(info.value) or "not a TensorFlow Lite" in str(info.value) \
        or "past the end" in str(info.value)


def test_bad_input_dtype():
    with pytest.raises(ValueError, match="input_dtype"):
        from_lce(DATA / f"{MODELS[0]}.tflite", input_dtype="int8")


def test_exported_name():
    assert ec.from_lce is from_lce
