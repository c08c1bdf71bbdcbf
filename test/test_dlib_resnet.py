"""dlib ResNet port: the .dat reader, the torch network, and parity with dlib itself."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from face_recognition_ros.encoders.base import file_sha256
from face_recognition_ros.encoders.dlib_format import DlibReader, parse_anet, read_anet
from face_recognition_ros.encoders.dlib_resnet import (
    DLIB_CHIP_150,
    DlibResNet,
    DlibResNetEncoder,
    add_zero_padded,
    default_weights_path,
    load_dlib_weights,
)
from face_recognition_ros.errors import ModelError
from face_recognition_ros.image_files import load_image

# Observed max |difference| against dlib 20.0 on CPU is ~4e-7 per component of descriptors whose
# components are ~0.1 in size; the margin allows for other BLAS/conv summation orders.
PARITY_ATOL = 1e-5


@pytest.fixture(scope="module")
def weights_path() -> Path:
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"dlib weights not installed at {path} (pip install face_recognition_models)")
    return path


@pytest.fixture(scope="module")
def encoder(weights_path: Path) -> DlibResNetEncoder:
    return DlibResNetEncoder(weights_path)


# ------------------------------------------------------------------ serialisation primitives


def test_reader_decodes_dlib_compact_integers():
    # control byte: low nibble = byte count, bit 7 = negative; then little-endian magnitude
    reader = DlibReader(bytes([0x01, 0x00, 0x02, 0x2C, 0x01, 0x81, 0x05]))
    assert [reader.read_int(), reader.read_int(), reader.read_int()] == [0, 300, -5]
    assert reader.at_end()


def test_reader_decodes_floats_as_mantissa_times_power_of_two():
    # 0.75 = 3 * 2**-2 and -6.0 = -3 * 2**1, mantissa written first
    reader = DlibReader(bytes([0x01, 0x03, 0x81, 0x02, 0x81, 0x03, 0x01, 0x01]))
    assert reader.read_float() == 0.75
    assert reader.read_float() == -6.0


def test_reader_decodes_strings_bools_and_tensors():
    payload = struct.pack("<2f", 1.5, -2.0)
    tensor_header = bytes([0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01])  # version 2, shape 1x2x1x1
    data = bytes([0x01, 0x04]) + b"con_" + b"10" + tensor_header + payload
    reader = DlibReader(data)
    assert reader.read_string() == "con_"
    assert (reader.read_bool(), reader.read_bool()) == (True, False)
    tensor = reader.read_tensor()
    assert tensor.shape == (1, 2, 1, 1)
    np.testing.assert_array_equal(tensor.ravel(), [1.5, -2.0])


def test_reader_rejects_truncated_and_malformed_data():
    with pytest.raises(ModelError, match="truncated"):
        DlibReader(bytes([0x02, 0x01])).read_int()
    with pytest.raises(ModelError, match="control byte"):
        DlibReader(bytes([0x00])).read_int()
    with pytest.raises(ModelError, match="bool"):
        DlibReader(b"x").read_bool()


def test_parse_rejects_files_that_are_not_the_network(tmp_path: Path):
    with pytest.raises(ModelError):
        parse_anet(b"\x01\x01" + bytes([0x01, 0x03]) + b"abc")
    bogus = tmp_path / "bogus.dat"
    bogus.write_bytes(b"not a dlib model at all")
    with pytest.raises(ModelError, match="not a dlib face-recognition ResNet"):
        DlibResNetEncoder(bogus)
    with pytest.raises(ModelError, match="not found"):
        DlibResNetEncoder(tmp_path / "missing.dat")


def test_truncated_weights_file_is_a_model_error(weights_path: Path, tmp_path: Path):
    cut = tmp_path / "cut.dat"
    cut.write_bytes(weights_path.read_bytes()[:1_000_000])
    with pytest.raises(ModelError, match="truncated"):
        read_anet(cut)


# ------------------------------------------------------------------ the real weights file


def test_parser_yields_the_anet_layers_and_parameter_shapes(weights_path: Path):
    network = read_anet(weights_path)
    kinds = [layer.kind for layer in network.layers]
    assert kinds[:4] == ["con", "affine", "relu", "max_pool"]
    assert kinds[-2:] == ["avg_pool", "fc"]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    first, fc = network.layers[0], network.layers[-1]
    assert first.params["weight"].shape == (32, 3, 7, 7) and first.params["bias"].shape == (32,)
    assert fc.params["weight"].shape == (256, 128) and "bias" not in fc.params
    # the last down-sampling block: 256 filters, stride 2, and dlib's no-padding-when-strided rule
    assert network.layers[-12].args == (256, 3, 3, 2, 2)
    assert network.input_mean_rgb == pytest.approx([122.782, 117.001, 104.298], abs=1e-3)
    parsed = sum(value.size for layer in network.layers for value in layer.params.values())
    assert parsed == sum(p.numel() for p in DlibResNet().parameters())


def test_weights_are_parsed_once_per_process(weights_path: Path):
    assert load_dlib_weights(weights_path)[1] is load_dlib_weights(str(weights_path))[1]


# ------------------------------------------------------------------ torch network


def test_add_zero_padded_matches_dlib_add_for_different_shapes():
    small = torch.ones(1, 2, 3, 3)
    large = torch.full((1, 3, 4, 4), 10.0)
    out = add_zero_padded(small, large)
    assert out.shape == (1, 3, 4, 4)
    assert torch.all(out[:, :2, :3, :3] == 11)
    assert torch.all(out[:, 2] == 10) and torch.all(out[:, :, 3] == 10) and torch.all(out[:, :, :, 3] == 10)


def test_network_maps_a_batch_to_finite_128d_descriptors(encoder: DlibResNetEncoder):
    batch = torch.randn(2, *encoder.input_shape) * 0.3
    with torch.inference_mode():
        out = encoder.network(batch)
    assert out.shape == (2, 128)
    assert torch.isfinite(out).all()


def test_embed_returns_unit_vectors(encoder: DlibResNetEncoder):
    faces = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    embeddings = encoder.embed(faces)
    assert embeddings.shape == (3, 128) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_gradients_reach_every_parameter(weights_path: Path):
    model = DlibResNet()
    model.load_state_dict(load_dlib_weights(weights_path)[1])
    model.train()
    model(torch.randn(1, 3, 150, 150) * 0.3).pow(2).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_preprocess_subtracts_the_channel_means_and_divides_by_256(encoder: DlibResNetEncoder):
    faces = np.zeros((1, 150, 150, 3), np.uint8)
    faces[0, 5, 7] = (200, 100, 0)
    batch = encoder.preprocess(faces)
    assert batch.shape == (1, 3, 150, 150) and batch.dtype == np.float32
    expected = (np.array([200, 100, 0], np.float32) - encoder.input_mean_rgb) / 256
    np.testing.assert_array_equal(batch[0, :, 5, 7], expected)


def test_encoder_describes_itself(encoder: DlibResNetEncoder, weights_path: Path):
    from face_recognition_ros.encoders import _FACTORIES

    assert _FACTORIES["dlib_resnet"] is DlibResNetEncoder
    assert encoder.name == "dlib_resnet" and encoder.embedding_size == 128
    assert encoder.template is DLIB_CHIP_150 and encoder.template.size == (150, 150)
    assert encoder.input_shape == (3, 150, 150)
    assert encoder.weights_hash == file_sha256(weights_path)
    assert encoder.identity.startswith(f"dlib_resnet:{encoder.weights_hash}:")


def test_embed_rejects_crops_of_the_wrong_size(encoder: DlibResNetEncoder):
    with pytest.raises(ValueError, match="150x150"):
        encoder.embed(np.zeros((1, 112, 112, 3), np.uint8))


# ------------------------------------------------------------------ parity with dlib

PARITY_IMAGES = ("obama.jpg", "obama2.jpg", "biden.jpg", "two_people.jpg")


def _shrink(image: np.ndarray, longest: int = 640) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def dlib_chips(media_dir: Path, weights_path: Path) -> dict[str, list[np.ndarray]]:
    """dlib.get_face_chip(img, shape, 150, 0.25) of every face dlib finds, per image."""
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights_path.parent / "shape_predictor_5_face_landmarks.dat"))
    chips = {}
    for name in PARITY_IMAGES:
        image = _shrink(load_image(media_dir / name))
        chips[name] = [
            np.asarray(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
            for box in detector(image, 0)
        ]
    return chips


def test_descriptors_match_dlib(dlib_chips, encoder: DlibResNetEncoder, weights_path: Path):
    dlib = pytest.importorskip("dlib")
    reference_model = dlib.face_recognition_model_v1(str(weights_path))
    chips = np.stack([chip for faces in dlib_chips.values() for chip in faces])
    assert len(chips) >= 5  # one face in each single-person photo, two in two_people.jpg
    reference = np.array([reference_model.compute_face_descriptor(chip) for chip in chips], np.float32)
    with torch.inference_mode():
        ours = encoder.network(torch.from_numpy(encoder.preprocess(chips))).numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=PARITY_ATOL)
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999


def test_same_person_is_closer_than_different_people(dlib_chips, encoder: DlibResNetEncoder):
    obama_a, obama_b, biden = (encoder.embed(np.stack(dlib_chips[n][:1]))[0] for n in PARITY_IMAGES[:3])
    same = float(obama_a @ obama_b)
    assert same > float(obama_a @ biden) + 0.05
    assert same > float(obama_b @ biden) + 0.05


def test_template_with_retinaface_landmarks_reproduces_dlib_chips(
    media_dir: Path, encoder: DlibResNetEncoder, weights_path: Path
):
    dlib = pytest.importorskip("dlib")
    retinaface = pytest.importorskip("retinaface")
    from face_recognition_ros.alignment import align_faces

    image = _shrink(load_image(media_dir / "obama.jpg"))
    predictor = dlib.shape_predictor(str(weights_path.parent / "shape_predictor_5_face_landmarks.dat"))
    [box] = dlib.get_frontal_face_detector()(image, 0)
    reference = np.asarray(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    [face] = retinaface.detect_faces(image)
    landmarks = np.array([[[p.x, p.y] for p in face.landmarks]], np.float32)
    ours = align_faces(image, landmarks, encoder.template)
    cosine = float(encoder.embed(ours)[0] @ encoder.embed(reference[None])[0])
    assert cosine > 0.98
