"""Named datasets (bench.data.datasets), served from a local HTTP server on 127.0.0.1, never the internet: first fetch,
reuse with no network, hash mismatch, interrupted download, corrupted cache, the offline error, separate training
and evaluation sources, and identical crops for every entry."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.data import datasets
from bench.cli import main
from bench.data.images import image_list_sha256, load_images
from bench.data.datasets import Dataset
from bench.errors import BenchInputError
from bench.config.suite import DataConfig


def png(seed: int, height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


EVAL_PHOTOS = {f"kodim0{i}.png": png(i, 24 + 4 * i, 40) for i in (1, 2, 3)}  # a miniature Kodak
TRAIN_MEMBERS = {f"DIV2K_train_HR/000{i}.png": png(10 + i, 36, 28 + 4 * i) for i in range(1, 6)}


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TRAIN_ARCHIVE = zipped(TRAIN_MEMBERS)


class Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 and logs every request; a path in ``truncate`` sends
    its full Content-Length header but half its body, then hangs up (a download cut off midway)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = self.path in server.truncate
                self.wfile.write(body[: len(body) // 2] if cut else body)
                self.close_connection = cut

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: any request from now on is refused, as offline."""
        self.httpd.shutdown()
        self.httpd.server_close()


class CurrentStderr:
    """Writes to whatever sys.stderr is when a message comes (pytest swaps it per test)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """The registry's "kodak" and "div2k" pointed at a local server holding miniature versions of them, and the
    cache in a temporary folder."""
    import pooch

    for handler in pooch.get_logger().handlers:  # pooch's log handler would keep the (closed) stderr of the test
        monkeypatch.setattr(handler, "stream", CurrentStderr())  # that imported pooch first
    served = Server()
    served.files = {f"/kodak/{name}": data for name, data in EVAL_PHOTOS.items()}
    served.files["/div2k/DIV2K_train_HR.zip"] = TRAIN_ARCHIVE
    sha = lambda data: hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(
        datasets.DATASETS,
        "kodak",
        Dataset(
            name="kodak",
            title="miniature Kodak",
            base_url=f"{served.url}/kodak/",
            files={name: sha(data) for name, data in EVAL_PHOTOS.items()},
            download="20 kB",
            licence="test",
            citation="test",
        ),
    )
    monkeypatch.setitem(
        datasets.DATASETS,
        "div2k",
        Dataset(
            name="div2k",
            title="miniature DIV2K",
            base_url=f"{served.url}/div2k/",
            files={"DIV2K_train_HR.zip": sha(TRAIN_ARCHIVE)},
            download="20 kB",
            licence="test",
            citation="test",
        ),
    )
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "cache"))
    for proxy in ("NO_PROXY", "no_proxy"):  # a proxy set for package registries must not carry loopback requests
        monkeypatch.setenv(proxy, "127.0.0.1,localhost")
    yield served
    served.stop()


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


@pytest.fixture(scope="session")
def write_suite(tiny_suite):
    """``write_suite(folder, data, entries=("mse",)) -> Path``: folder/named.toml, the tiny suite with the [data]
    lines ``data`` (its sources) at 16 px, 6 evaluation crops, 3 steps and no timing settings."""

    def write(folder: Path, data: str, entries=("mse",)) -> Path:
        suite = folder / "named.toml"
        suite.write_text(
            tiny_suite(
                entries,
                name="named",
                data=f"{data}\nresolution = 16\neval_crops = 6",
                train={"steps": 3, "log_every": 1, "eval_every": 0},
                timing=None,
                metrics={"lpips_weights": "random"},
            )
        )
        return suite

    return write


def test_first_fetch_downloads_each_file_once_and_keeps_it_verified(server, tmp_path):
    folder = datasets.fetch("kodak")
    assert folder == tmp_path / "cache" / "kodak"
    assert server.requests == [f"/kodak/{name}" for name in EVAL_PHOTOS]
    assert files_under(folder) == sorted(folder / name for name in EVAL_PHOTOS)  # no temporary files left
    for name, data in EVAL_PHOTOS.items():
        assert (folder / name).read_bytes() == data


def test_a_cached_dataset_never_touches_the_network(server):
    datasets.fetch("kodak")
    datasets.fetch("div2k")
    served = len(server.requests)
    server.stop()  # from here any request would be refused
    images = load_images(DataConfig(source="div2k", eval_source="kodak", resolution=16, eval_crops=6))
    assert len(images.train) == len(TRAIN_MEMBERS) and len(images.eval_photos) == len(EVAL_PHOTOS)
    datasets.fetch("kodak")
    assert len(server.requests) == served


def test_a_download_whose_hash_does_not_match_is_refused_and_not_kept(server, tmp_path):
    server.files["/kodak/kodim02.png"] = png(99, 28, 40)  # the server now has another picture under that name
    with pytest.raises(BenchInputError, match="does not match") as refused:
        datasets.fetch("kodak")
    assert "kodim02.png" in str(refused.value)
    folder = tmp_path / "cache" / "kodak"
    assert files_under(folder) == [folder / "kodim01.png"]  # fetched before it; the bad one and its temp are gone


def test_a_corrupted_cache_file_is_fetched_again(server, tmp_path):
    folder = datasets.fetch("kodak")
    (folder / "kodim01.png").write_bytes(EVAL_PHOTOS["kodim01.png"][:100])  # truncated on disk
    datasets.fetch("kodak")
    assert (folder / "kodim01.png").read_bytes() == EVAL_PHOTOS["kodim01.png"]
    assert server.requests.count("/kodak/kodim01.png") == 2 and server.requests.count("/kodak/kodim02.png") == 1


def test_an_interrupted_download_leaves_nothing_and_the_next_fetch_completes(server, tmp_path):
    server.truncate.add("/div2k/DIV2K_train_HR.zip")
    with pytest.raises(BenchInputError, match="DIV2K_train_HR.zip"):
        datasets.fetch("div2k")
    assert not (tmp_path / "cache").exists()  # no half file under the final name nor as a temporary; no folder
    server.truncate.clear()
    folder = datasets.fetch("div2k")
    assert (folder / "DIV2K_train_HR.zip").read_bytes() == TRAIN_ARCHIVE


def test_offline_run_is_one_clear_error_and_writes_nothing(server, tmp_path, capsys, write_suite):
    server.stop()
    suite = write_suite(tmp_path, 'source = "div2k"\neval_source = "kodak"')
    out = tmp_path / "results"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    folder = tmp_path / "cache" / "div2k"
    for part in (
        "dataset 'div2k'",
        f"{server.url}/div2k/DIV2K_train_HR.zip",
        str(folder),
        "by hand",
        "python -m bench fetch div2k",
    ):
        assert part in err, part
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_separate_sources_train_on_one_and_evaluate_on_the_other(server):
    images = load_images(DataConfig(source="div2k", eval_source="kodak", resolution=16, eval_crops=6))
    assert images.train_names == tuple(TRAIN_MEMBERS) and images.eval_photos == tuple(EVAL_PHOTOS)
    for photo, member in zip(images.train, TRAIN_MEMBERS.values()):  # every training photograph, whole
        np.testing.assert_array_equal((photo.permute(1, 2, 0).numpy() * 255).round(), decoded(member))
    for crop, name in zip(images.eval, images.eval_names):  # each crop is Kodak's pixels where its name says
        photo, position = name.split("@")
        top, left = map(int, position.split(","))
        expected = decoded(EVAL_PHOTOS[photo])[top : top + 16, left : left + 16]
        np.testing.assert_array_equal((crop.permute(1, 2, 0).numpy() * 255).round(), expected)
    assert [name.split("@")[0] for name in images.eval_names] == list(EVAL_PHOTOS) * 2  # round-robin

    held_out = load_images(DataConfig(source="kodak", resolution=16, eval_images=1, eval_crops=2))
    assert held_out.eval_photos == ("kodim02.png",) and held_out.train_names == ("kodim01.png", "kodim03.png")


def test_every_entry_sees_the_same_crops_and_rows_record_the_sources(server, tmp_path, monkeypatch, write_suite):
    from bench.train import loop as train

    batches = []
    make_batch = train.make_batch

    def recording(*args):
        batch = make_batch(*args)
        batches.append(batch.clone())
        return batch

    monkeypatch.setattr(train, "make_batch", recording)
    suite = write_suite(tmp_path, 'source = "div2k"\neval_source = "kodak"', ["mse", "l1"])
    out = tmp_path / "results"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--no-timing"]) == 0
    assert len(batches) == 6  # 3 steps per entry
    for first, second in zip(batches[:3], batches[3:]):
        assert first.equal(second)
    (folder,) = (out / "named").iterdir()
    per_image = pd.read_csv(folder / "per_image.csv")
    names = per_image.groupby("entry")["crop_name"].apply(list)
    assert names["mse"] == names["l1"] and all(name.split("@")[0] in EVAL_PHOTOS for name in names["mse"])
    expected = load_images(DataConfig(source="div2k", eval_source="kodak", resolution=16, eval_crops=6)).images_sha256
    quality = pd.read_csv(folder / "quality.csv")
    assert (quality["data_source"] == "div2k").all() and (quality["eval_source"] == "kodak").all()
    assert (quality["images_sha256"] == expected).all() and len(quality) == 4  # two entries, two baselines
    env = json.loads((folder / "environment.json").read_text())
    assert (env["data_source"], env["eval_source"], env["images_sha256"]) == ("div2k", "kodak", expected)
    assert env["data_cache"] == str(tmp_path / "cache")
    report = (folder / "report.html").read_text()
    assert "training photographs from div2k" in report and "held-out photographs from kodak" in report


def test_image_list_hash_follows_every_pixel_name_and_role(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png(i, 20, 20))
    config = DataConfig(source="folder", path=str(tmp_path), resolution=16, eval_images=1, eval_crops=1)
    first = load_images(config, tmp_path).images_sha256
    assert load_images(config, tmp_path).images_sha256 == first
    pixels = decoded((tmp_path / "2.png").read_bytes()).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(tmp_path / "2.png")
    assert load_images(config, tmp_path).images_sha256 != first
    assert image_list_sha256([("a", "1")], [("b", "2")]) != image_list_sha256([("b", "2")], [("a", "1")])


def test_fetch_command_fetches_what_a_suite_names_into_its_cache(server, tmp_path, monkeypatch, capsys, write_suite):
    monkeypatch.delenv(datasets.ENV_CACHE)
    suite = write_suite(tmp_path, 'source = "div2k"\neval_source = "kodak"\ncache = "my_cache"')
    assert main(["fetch", str(suite)]) == 0
    out, err = capsys.readouterr()
    assert "100%" in err  # pooch's tqdm progress bar, one per downloaded file
    assert files_under(tmp_path / "my_cache") == sorted(
        [tmp_path / "my_cache" / "div2k" / "DIV2K_train_HR.zip"]
        + [tmp_path / "my_cache" / "kodak" / n for n in EVAL_PHOTOS]
    )
    assert f"div2k: 1 file(s) present and verified in {tmp_path / 'my_cache' / 'div2k'}" in out
    assert main(["fetch", "no-such-dataset"]) == 2
    assert "kodak, div2k" in capsys.readouterr().err


def test_cache_folder_is_the_variable_else_the_suites_else_the_users(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "from_env"))
    assert datasets.cache_root(tmp_path / "from_suite") == tmp_path / "from_env"
    monkeypatch.delenv(datasets.ENV_CACHE)
    assert datasets.cache_root(tmp_path / "from_suite") == tmp_path / "from_suite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # what platformdirs reads on Linux
    assert datasets.cache_root() == tmp_path / "xdg" / "lossbench"


def test_doctor_says_which_named_datasets_are_cached(server, tmp_path, capsys):
    assert main(["doctor", "--no-network"]) == 0
    assert 'source = "kodak": not cached (0 of 3 files)' in capsys.readouterr().out
    folder = datasets.fetch("kodak")
    (folder / "kodim03.png").write_bytes(b"damaged")
    assert main(["doctor", "--no-network"]) == 0
    assert 'source = "kodak": not cached (2 of 3 files)' in capsys.readouterr().out
    datasets.fetch("kodak")
    assert main(["doctor", "--no-network"]) == 0
    out = capsys.readouterr().out
    assert 'source = "kodak": cached (3 files, hashes checked)' in out and str(tmp_path / "cache") in out


@pytest.mark.parametrize(
    "data, key, message",
    [
        ('source = "kodac"', "data.source", "did you mean 'kodak'"),
        ('source = "kodak"\neval_source = "kodak"', "data.eval_source", "trained on"),
        ('source = "kodak"\neval_path = "x"', "data.eval_path", 'eval_source = "folder"'),
    ],
)
def test_bad_named_sources_are_input_errors(tmp_path, capsys, data, key, message, write_suite):
    assert main(["validate", str(write_suite(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert key in err and message in err


@pytest.mark.parametrize(
    "train, evaluate, refused",
    [("photos", "photos/test", True), ("photos/test", "photos", True), ("photos/train", "photos/test", False)],
)
def test_an_evaluation_folder_inside_or_around_the_training_folder_is_refused(
    tmp_path, capsys, train, evaluate, refused, write_suite
):
    """Folders are read with their subfolders, so nested ones would train on the evaluation photographs."""
    for folder in ("photos/train", "photos/test"):
        (tmp_path / folder).mkdir(parents=True)
    data = f'source = "folder"\npath = "{train}"\neval_source = "folder"\neval_path = "{evaluate}"'
    assert main(["validate", str(write_suite(tmp_path, data))]) == (2 if refused else 0)
    assert ("eval_path is, holds or lies inside path" in capsys.readouterr().err) == refused


def test_the_real_registry_pins_a_sha256_a_licence_and_a_citation_per_dataset():
    assert list(datasets.KODAK.files) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    for dataset in (datasets.KODAK, datasets.DIV2K, datasets.DIV2K_VALID):
        assert dataset.base_url.startswith("https://") and dataset.licence and dataset.citation
        assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in dataset.files.values())
