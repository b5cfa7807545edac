"""Ray Data integration (espresso_cl/ray.py): MNIST as Parquet through ``read_parquet`` and
``map_batches(Predictor)`` with 1 and 2 actors and each batch format, and ``predict --ray``,
with 0 disagreements with one process; a bad value found by an actor is reported as itself.
One local Ray for the module; its workers use this process's ESPRESSO_DEVICE."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
import ray.data  # noqa: E402

from espresso_cl import cli, io, settings  # noqa: E402
from espresso_cl.data import DataUnavailable, load_mnist  # noqa: E402
from espresso_cl.ray import _PieceReader, _pieces, Predictor, actor_device  # noqa: E402

# Actors start their own processes and devices; Ray does not depend on the tuning profile.
pytestmark = [pytest.mark.no_oclgrind, pytest.mark.once]
SAMPLES = 2000
FILES = 4
CNN = str(io.shipped_model("mnist_cnn"))


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {settings.DEVICE: settings.device_spec()}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    try:
        images = load_mnist("test")[0][:SAMPLES]
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("ray") / "mnist"
    folder.mkdir()
    rows = SAMPLES // FILES
    for index in range(FILES):
        part = images[index * rows:(index + 1) * rows]
        ids = np.arange(index * rows, (index + 1) * rows)
        pq.write_table(pa.table({"id": ids, "image": pa.array(list(part.reshape(rows, -1)))}),
                       folder / f"part-{index}.parquet")
    return folder, images


@pytest.fixture(scope="module")
def expected(mnist, runtime):
    return io.load(CNN, runtime=runtime).predict_classes(mnist[1])


@pytest.mark.parametrize("actors, batch_format, model", [(1, "numpy", "path"), (2, "pyarrow", "bytes"),
                                                         (2, "pandas", "path")])
def test_map_batches_agrees_with_one_process(cluster, mnist, expected, actors, batch_format, model):
    folder, _ = mnist
    source = CNN if model == "path" else open(CNN, "rb").read()
    # Blocks of 500 rows: Ray reads small files as one block, which only one actor would get.
    dataset = ray.data.read_parquet(str(folder)).repartition(target_num_rows_per_block=500).map_batches(
        Predictor, fn_constructor_kwargs={"model": source, "column": "image", "id_column": "id", "top_k": 2},
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1 / actors, batch_size=256,
        batch_format=batch_format)
    result = dataset.to_pandas()
    assert len(result) == SAMPLES
    order = np.argsort(result["id"].to_numpy())
    np.testing.assert_array_equal(result["id"].to_numpy()[order], np.arange(SAMPLES))
    np.testing.assert_array_equal(result["class"].to_numpy()[order], expected)
    np.testing.assert_array_equal(np.stack(result["top_k"].to_numpy())[order, 0], expected)


def test_cli_ray(cluster, mnist, expected, tmp_path):
    folder, _ = mnist
    out = tmp_path / "out.parquet"
    assert cli.main(["predict", CNN, str(folder), "-o", str(out), "--id-column", "id", "--ray", "--actors", "2",
                     "--batch-size", "100"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "class"]
    np.testing.assert_array_equal(table["id"].to_numpy(), np.arange(SAMPLES))  # the input's order
    np.testing.assert_array_equal(table["class"].to_numpy(), expected)


def test_cli_ray_reports_an_actors_input_error(cluster, mnist, tmp_path, capsys):
    # Past the rows the driver checks itself: only an actor sees the bad value.
    pixels = np.zeros((600, 784), np.int16)
    pixels[500, 3] = 300
    pq.write_table(pa.table({"image": pa.array(list(pixels))}), tmp_path / "bad.parquet")
    out = tmp_path / "out.npy"
    assert cli.main(["predict", CNN, str(tmp_path / "bad.parquet"), "-o", str(out), "--ray"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "column 'image' holds values from 0 to 300" in err.splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_device_outside_an_actor_is_the_process_one(cluster):
    assert actor_device() == settings.device_spec()  # Ray is up, but the driver is no actor


def test_one_row_group_is_cut_into_ranges_read_in_order(mnist, expected, tmp_path):
    # What predict --ray's actors read: one file of one row group, cut for two actors.
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"id": np.arange(SAMPLES), "image": pa.array(list(mnist[1].reshape(SAMPLES, -1)))}), path)
    pieces = _pieces([path], actors=2, rows=128)
    assert len(pieces) == 8 and pieces[0]["start"] == 0 and pieces[-1]["stop"] == SAMPLES
    assert all(a["stop"] == b["start"] for a, b in zip(pieces, pieces[1:]))
    reader = _PieceReader(["image", "id"], 128, model=CNN, column="image", id_column="id",
                          device=settings.device_spec())
    results = [reader({k: np.array([v]) for k, v in piece.items()}) for piece in pieces]
    np.testing.assert_array_equal(np.concatenate([r["id"] for r in results]), np.arange(SAMPLES))
    np.testing.assert_array_equal(np.concatenate([r["class"] for r in results]), expected)
