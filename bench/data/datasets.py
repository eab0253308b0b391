"""Named image datasets (Kodak, DIV2K): downloaded once with pooch, checked against pinned SHA-256 hashes, then
read from the cache folder without touching the network.

The cache folder is ``$LOSSBENCH_DATA_DIR`` if set, else the suite's ``data.cache``, else the user's cache folder
(``pooch.os_cache("lossbench")``, ``~/.cache/lossbench`` on Linux); each dataset has a folder of its own in it.
pooch downloads into a temporary file beside the target and renames it only once its hash matches, so a failed,
interrupted or corrupted download leaves nothing behind; a cached file whose hash does not match (damaged on disk)
is downloaded again. Archives are never unpacked: the photographs are read from the verified archive itself, so
there is no half-unpacked folder to trust.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bench.errors import BenchInputError

ENV_CACHE = "LOSSBENCH_DATA_DIR"
FETCH_TIMEOUT_S = 60  # per connect and per read: a dead server fails within a minute; a slow download goes on


@dataclass(frozen=True)
class Dataset:
    name: str  # what data.source / data.eval_source call it
    title: str
    base_url: str  # a file's URL is base_url + its name
    files: Mapping[str, str]  # file name -> pinned SHA-256; a .zip holds the photographs, anything else is one
    download: str  # total download size, for messages
    licence: str
    citation: str

    def url(self, file: str) -> str:
        return self.base_url + file


KODAK = Dataset(
    name="kodak",
    title="Kodak Lossless True Color Image Suite (24 photographs, 768x512)",
    base_url="https://r0k.us/graphics/kodak/kodak/",
    # SHA-256 of r0k.us's PNGs as pinned in public code that verifies them: the table KODAK_SHA256 of
    # github.com/M0574F4/noema-lab (its Kodak source operation); kodim01, 07, 13 and 19 also match
    # KODAK_BINDINGS in github.com/intrinsicD/structsplat scripts/experiments/hier014_conditioned_projection.py.
    # Not recomputed here (no internet where this was written).
    files={
        "kodim01.png": "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd",
        "kodim02.png": "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd",
        "kodim03.png": "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db",
        "kodim04.png": "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa",
        "kodim05.png": "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53",
        "kodim06.png": "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18",
        "kodim07.png": "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4",
        "kodim08.png": "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7",
        "kodim09.png": "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d",
        "kodim10.png": "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23",
        "kodim11.png": "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6",
        "kodim12.png": "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980",
        "kodim13.png": "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08",
        "kodim14.png": "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e",
        "kodim15.png": "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683",
        "kodim16.png": "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54",
        "kodim17.png": "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b",
        "kodim18.png": "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa",
        "kodim19.png": "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc",
        "kodim20.png": "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a",
        "kodim21.png": "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b",
        "kodim22.png": "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29",
        "kodim23.png": "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf",
        "kodim24.png": "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96",
    },
    download="15 MB",
    licence="released by the Eastman Kodak Company for unrestricted usage, as stated by the distributor "
    "(r0k.us); no licence text from Kodak itself is known",
    citation="Rich Franzen, Kodak Lossless True Color Image Suite, http://r0k.us/graphics/kodak/",
)

DIV2K_CITATION = (
    "Eirikur Agustsson and Radu Timofte, NTIRE 2017 Challenge on Single Image Super-Resolution: "
    "Dataset and Study, CVPR Workshops 2017"
)
DIV2K_LICENCE = "for academic research only (DIV2K website, https://data.vision.ee.ethz.ch/cvl/DIV2K/)"
# SHA-256 of both archives as pinned by TensorFlow Datasets (tensorflow/datasets,
# tensorflow_datasets/url_checksums/div2k.txt, commit 1054f22d), which verifies every download against them.
DIV2K = Dataset(
    name="div2k",
    title="DIV2K training set (800 photographs, 2K resolution)",
    base_url="https://data.vision.ee.ethz.ch/cvl/DIV2K/",
    files={"DIV2K_train_HR.zip": "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"},
    download="3.5 GB",
    licence=DIV2K_LICENCE,
    citation=DIV2K_CITATION,
)
DIV2K_VALID = Dataset(
    name="div2k-valid",
    title="DIV2K validation set (100 photographs, 2K resolution)",
    base_url="https://data.vision.ee.ethz.ch/cvl/DIV2K/",
    files={"DIV2K_valid_HR.zip": "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"},
    download="449 MB",
    licence=DIV2K_LICENCE,
    citation=DIV2K_CITATION,
)

DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in (KODAK, DIV2K, DIV2K_VALID)}


def cache_root(configured: Path | None = None) -> Path:
    """Where datasets are cached: $LOSSBENCH_DATA_DIR, else ``configured`` (a suite's data.cache), else the
    user's cache folder."""
    import pooch

    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    return Path(configured) if configured is not None else Path(pooch.os_cache("lossbench")).expanduser()


def dataset_folder(name: str, configured: Path | None = None) -> Path:
    return cache_root(configured) / name


def fetch(name: str, configured: Path | None = None, progress: bool = False) -> Path:
    """The dataset's cache folder, every file in it matching its pinned hash: downloads what is missing or does
    not match. Any failure is one ``BenchInputError`` naming the dataset, the URL, the folder and the fix."""
    import pooch
    import requests

    dataset = DATASETS[name]
    folder = dataset_folder(name, configured)
    created = next((path for path in reversed([folder, *folder.parents]) if not path.exists()), None)
    store = pooch.create(
        path=folder,
        base_url=dataset.base_url,
        registry={file: f"sha256:{digest}" for file, digest in dataset.files.items()},
    )
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=FETCH_TIMEOUT_S)
    for file in dataset.files:
        try:
            store.fetch(file, downloader=downloader)
        except (requests.RequestException, ValueError, OSError) as error:  # offline, HTTP error, hash, disk
            if created is not None:
                _remove_empty_folders(folder, created)
            raise unavailable(dataset, folder, file, error) from None
    return folder


def _remove_empty_folders(folder: Path, top: Path) -> None:
    """The folders a failed fetch created, from ``folder`` up to ``top``, as long as they are empty: a failed
    fetch leaves the disk as it found it."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()  # only an empty folder goes
        except OSError:
            return
        if path == top:
            return


def cached_files(name: str, configured: Path | None = None) -> tuple[int, int]:
    """(files present with the right hash, files in the dataset); reads only, downloads and writes nothing."""
    import pooch

    dataset = DATASETS[name]
    folder = dataset_folder(name, configured)
    good = sum(
        (folder / file).is_file() and pooch.file_hash(str(folder / file)) == digest
        for file, digest in dataset.files.items()
    )
    return good, len(dataset.files)


def unavailable(dataset: Dataset, folder: Path, file: str, error: Exception) -> BenchInputError:
    text = str(error).strip()
    reason = type(error).__name__ + (f": {text.splitlines()[0][:300]}" if text else "")
    files = list(dataset.files)
    listing = files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]} ({len(files)} files)"
    return BenchInputError(
        f"could not fetch {dataset.url(file)} into the cache folder {folder} ({reason})",
        where=f"dataset {dataset.name!r}, {dataset.title}",
        fix=f"run `python -m bench fetch {dataset.name}` where the internet is reachable (e.g. a login node) with "
        f"the same cache folder, or download {listing} from {dataset.base_url} by hand and place "
        f"{'it' if len(files) == 1 else 'them'} in "
        f"{folder}/ (each is checked against its SHA-256 in bench/data/datasets.py); ${ENV_CACHE} or data.cache "
        f"choose another cache folder",
    )
