"""``bench publish``: the leaderboard site from crafted run folders, checked as files and in a real headless
Chromium (Debian's chromium and chromium-driver, driven by Selenium; .ci/run installs them)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.report.html import render
from bench.report import load_run
from bench.report.publish import publish
from bench.report.screenshot import find_chromium

METRICS = {  # metric: (mean of mse's scores, higher is better); enough columns to be wider than 1300 px
    "psnr": (25.0, True),
    "ssim": (0.70, True),
    "ms_ssim": (0.89, True),
    "lpips": (0.012, False),
    "l1": (0.042, False),
    "mse": (0.0037, False),
    "fsim": (0.85, True),
    "gmsd": (0.099, False),
    "haarpsi": (0.72, True),
}
ENTRIES = {"mse": ("1*mse", "mse psnr", 0.0), "l1": ("1*l1", "l1", 0.08), "ssim": ("1*ssim", "ssim", 0.16)}
BASELINE = "baseline-mean-colour"


def craft_run(folder: Path, *, task: str, machine: str, commit: str, seed: int, schedule: str | None = None) -> Path:
    """A small finished run folder as `bench run` writes it: quality, per-image scores, speed, environment,
    reconstructions and a report.html that links a reference recovery page beside the run."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    quality, per_image, speed = [], [], []
    for entry, (formula, own, worse) in {**ENTRIES, BASELINE: ("mean colour", "", 0.5)}.items():
        kind = "baseline" if entry == BASELINE else "trained"
        for run_seed in (0, 1):
            crops = []
            for crop in range(6):
                scores = {
                    m: mean * (1 - worse if higher else 1 + worse) * (1 + 0.01 * rng.standard_normal())
                    for m, (mean, higher) in METRICS.items()
                }
                crops.append(scores)
                per_image.append({"entry": entry, "seed": run_seed, "crop": crop, **scores})
            row = {
                "entry": entry,
                "seed": run_seed,
                "kind": kind,
                "formula": formula,
                "trained_on": own,
                "task": task,
                "profile": "cpu",
                "resolution": 32,
                "steps": 0 if kind == "baseline" else 100,
                "model_config": "autoencoder(latent_dim=64, bottleneck='conv', width=32)",
                "status": "ok",
                "train_seconds": 0.0 if kind == "baseline" else 2.0,
                **{m: float(np.mean([c[m] for c in crops])) for m in METRICS},
            }
            if schedule is not None:
                row["schedule"] = schedule
            quality.append(row)
        if kind == "trained":
            for phase, ms in (("forward", 1.0), ("backward", 0.5), ("total", 1.5)):
                factor = 1 + list(ENTRIES).index(entry)
                speed.append(
                    {
                        "entry": entry,
                        "variant": "fp32",
                        "phase": phase,
                        "median_ms": ms * factor,
                        "batch_size": 1,
                        "resolution": 512,
                        "device": "cpu",
                        "device_name": machine,
                    }
                )
    pd.DataFrame(quality).to_csv(folder / "quality.csv", index=False)
    pd.DataFrame(per_image).to_csv(folder / "per_image.csv", index=False)
    pd.DataFrame(speed).to_csv(folder / "speed.csv", index=False)
    env = {
        "suite": "mini",
        "task": task,
        "profile": "cpu",
        "train_resolution": 32,
        "device": "cpu",
        "device_type": "cpu",
        "device_name": machine,
        "git_commit": commit,
        "started": "2026-12-01T10:00:00",
        "finished": "2026-12-01T10:01:40",
        "train_wall_seconds": 99.5,
    }
    (folder / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    pictures = folder / "reconstructions"
    pictures.mkdir()
    for name in ("original__32px", *(f"{entry}__seed0" for entry in ENTRIES)):
        Image.fromarray(rng.integers(0, 255, (32, 96, 3), dtype=np.uint8)).save(pictures / f"{name}.png")
    recovery = folder.parent / "recover" / "1" / "recovery.html"
    recovery.parent.mkdir(parents=True, exist_ok=True)
    recovery.write_text("<!DOCTYPE html><title>recovery</title><p>recovery</p>", encoding="utf-8")
    (folder / "report.html").write_text(
        '<!DOCTYPE html><title>report</title><a href="../recover/1/recovery.html#entry-0">recovery</a>',
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three runs: on machine X, autoencode and denoise; on machine Y, autoencode again (the same setting)."""
    root = tmp_path_factory.mktemp("published")
    craft_run(root / "x" / "ae", task="autoencode", machine="Machine X", commit="aaaaaaa", seed=0)
    craft_run(root / "x" / "dn", task="denoise", machine="Machine X", commit="aaaaaaa", seed=1)
    craft_run(root / "y" / "ae", task="autoencode", machine="Machine Y", commit="bbbbbbb", seed=2)
    return root


@pytest.fixture(scope="module")
def site(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["publish", str(results), "--out", str(out)]) == 0
    return out


def leaderboards(site: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted((site / "leaderboards").glob("*.html"))}


# ----------------------------------------------------------------------------------------------- files


def test_runs_of_different_settings_get_two_leaderboards_and_machines_of_one_share_it(site):
    boards = leaderboards(site)
    assert len(boards) == 2, list(boards)
    (autoencode,) = [page for name, page in boards.items() if "-autoencode-" in name]
    (denoise,) = [page for name, page in boards.items() if "-denoise-" in name]
    assert "Machine X" in autoencode and "Machine Y" in autoencode
    assert "Machine X" in denoise and "Machine Y" not in denoise
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", autoencode.split("<tbody>")[1].split("</tbody>")[0])
    assert len(rows) == 2 * (len(ENTRIES) + 1)  # every entry and the baseline, once per machine


def test_a_missing_schedule_is_constant_and_another_schedule_is_another_setting(results, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(results / "x", root / "x")
    craft_run(root / "z" / "ae", task="autoencode", machine="Machine Z", commit="ccccccc", seed=3, schedule="constant")
    craft_run(root / "z" / "cos", task="autoencode", machine="Machine Z", commit="ccccccc", seed=4, schedule="cosine")
    site = publish([root], tmp_path / "site")
    assert len(site.leaderboards) == 3
    assert {s.schedule for s in site.leaderboards} == {"constant", "cosine"}
    boards = leaderboards(tmp_path / "site")
    shared = [page for page in boards.values() if "Machine X" in page and "-autoencode-" in page]
    assert len(shared) == 1 and "Machine Z" in shared[0]  # no schedule column, or "constant": one setting


def test_publishing_twice_gives_the_same_files_and_a_size_line(results, site, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["publish", str(results), "--out", str(again)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"site: \d+ files, \d+\.\d MB in .*again", last), last
    names = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file())
    for name in names:
        assert (site / name).read_bytes() == (again / name).read_bytes(), name
    assert main(["publish", str(results), "--out", str(again)]) == 0  # its own earlier site is replaced


def test_site_is_offline_and_refuses_to_overwrite_a_foreign_folder(results, site, tmp_path, capsys):
    for path in site.rglob("*"):
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"(src|href)=\"(https?:)?//", text), path
            assert "http://" not in text and "https://" not in text, path
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["publish", str(results), "--out", str(foreign)]) == 2
    assert "was not written by bench publish" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_pages_for_each_loss_speed_and_runs(site):
    for entry in ENTRIES:
        page = (site / "losses" / f"{entry}.html").read_text(encoding="utf-8")
        assert page.count("Machine X") >= 2 and "Machine Y" in page and "built-in" in page
        assert f'alt="{entry}"' in page and 'alt="reference crops"' in page
    speed = (site / "speed.html").read_text(encoding="utf-8")
    assert speed.count('<td class="num" data-sort="3">3.00</td>') == 3  # ssim: 3x mse in each run
    runs = (site / "runs.html").read_text(encoding="utf-8")
    assert runs.count("report.html</a>") == 3 and "aaaaaaa" in runs and "bbbbbbb" in runs
    assert len(list((site / "reports").glob("*/x/recover/1/recovery.html"))) == 1  # linked from x's reports


# ----------------------------------------------------------------------------------------------- browser


def require_browser() -> None:
    """Skips where Chromium or its driver is missing, except in CI (``CI`` set, as .ci/run does), where it fails."""
    if find_chromium() is None or shutil.which("chromedriver") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium or chromium-driver is missing (.ci/run installs them)")
        pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="pip install selenium (the test extra)")


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1300,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(site):
    """The site on a local static server (as `python -m http.server` serves it)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def pages(site: Path) -> list[str]:
    """The site's own pages (the copied run reports are the runs' own)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.parts[len(site.parts)] != "reports")


def column_values(browser, header: str) -> list[str]:
    return browser.execute_script(
        "var t = document.querySelector('table.sortable'), h = arguments[0];"
        "var i = Array.prototype.findIndex.call(t.tHead.rows[0].cells, function (c) {"
        "  return c.textContent.trim().indexOf(h) === 0; });"
        "return Array.prototype.map.call(t.tBodies[0].rows, function (r) {"
        "  return r.cells[i].getAttribute('data-sort') || ''; });",
        header,
    )


def test_clicking_a_header_sorts_its_rows(browser, site):
    from selenium.webdriver.common.by import By

    (name,) = [name for name in leaderboards(site) if "-autoencode-" in name]
    browser.get((site / "leaderboards" / name).as_uri())
    before = column_values(browser, "LPIPS")
    header = [
        h for h in browser.find_elements(By.CSS_SELECTOR, "table.sortable thead th") if h.text.startswith("LPIPS")
    ]
    header[0].click()
    ascending = column_values(browser, "LPIPS")
    numbers = [float(v) for v in ascending if v]
    assert numbers == sorted(numbers) and ascending != before
    header[0].click()
    numbers = [float(v) for v in column_values(browser, "LPIPS") if v]
    assert numbers == sorted(numbers, reverse=True)


def test_a_task_filter_hides_the_rows_of_other_tasks(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((site / "runs.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.sortable tbody tr")
    assert len([r for r in rows if r.is_displayed()]) == 3
    Select(browser.find_element(By.CSS_SELECTOR, "select[name=task]")).select_by_value("denoise")
    shown = [r for r in rows if r.is_displayed()]
    assert len(shown) == 1 and "denoise" in shown[0].text
    Select(browser.find_element(By.CSS_SELECTOR, "select[name=task]")).select_by_value("")
    assert len([r for r in rows if r.is_displayed()]) == 3


def test_every_local_link_and_image_loads_and_no_script_errors(browser, site, served):
    checked: set[str] = set()
    for page in pages(site):
        for base in (served, site.as_uri() + "/"):  # from a static server, and straight from the files
            browser.get_log("browser")  # drop what came before
            browser.get(urljoin(base, page))
            errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
            assert not errors, (page, errors)
            broken = browser.execute_script(
                "return Array.prototype.filter.call(document.images, function (i) {"
                "  return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; });"
            )
            assert not broken, (page, broken)
        links = browser.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('a[href], img[src], link[href], "
            "script[src]'), function (e) { return e.getAttribute('href') || e.getAttribute('src'); });"
        )
        for link in links:
            if link.startswith(("data:", "#")):
                continue
            assert not urlparse(link).scheme, (page, link)  # only relative links
            url = urljoin(urljoin(served, page), link)
            if url in checked:
                continue
            checked.add(url)
            with urllib.request.urlopen(url.split("#")[0]) as response:
                assert response.status == 200, (page, link)
                body = response.read().decode("utf-8", "replace")
            fragment = unquote(urlparse(url).fragment)
            if fragment:
                assert f'id="{fragment}"' in body, (page, link)
    assert len(checked) > 20


def test_wide_tables_scroll_in_their_box_with_the_entry_column_in_view(browser, site, results, tmp_path):
    """At 1300 px the leaderboard and the run report are wider than the window: the page does not widen, the
    table's box scrolls, and the entry column stays at the box's left edge."""
    report = tmp_path / "report.html"
    report.write_text(render(load_run(results / "x" / "ae")), encoding="utf-8")
    (name,) = [name for name in leaderboards(site) if "-autoencode-" in name]
    for page in ((site / "leaderboards" / name).as_uri(), report.as_uri()):
        browser.get(page)
        state = browser.execute_script(
            "var box = document.querySelector('.wide');"
            "var cell = box.querySelector('tbody tr td, table tr:nth-child(2) td');"
            "var page = document.documentElement.scrollWidth <= window.innerWidth;"
            "var wider = box.scrollWidth > box.clientWidth;"
            "box.scrollLeft = box.scrollWidth;"
            "return [page, wider, box.scrollLeft > 0,"
            "  Math.abs(cell.getBoundingClientRect().left - box.getBoundingClientRect().left)];"
        )
        assert state[:3] == [True, True, True], (page, state)
        assert state[3] < 2, (page, state)
