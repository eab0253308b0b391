"""The site's stylesheet (the run report's, plus the site's own rules) and its one small script.

The script only adds to plain HTML tables: click a column header to sort its rows (again to reverse), and a
select box above a table for every header marked ``data-filter`` (task, device, suite) hides the other rows.
With JavaScript off the tables read as they were written.
"""

from __future__ import annotations

from bench.report.html import CSS as REPORT_CSS

SITE_CSS = """
nav.site { display: flex; gap: 18px; padding: 8px 0 10px; border-bottom: 1px solid #ddd; font-weight: bold; }
nav.site a { text-decoration: none; color: #1f4e79; } nav.site a.here { color: #222; }
table.sortable thead th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\25b2"; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\25bc"; }
td.tied { background: #eef8ee; }
.filters { display: flex; gap: 14px; margin: 8px 0; font-size: 13px; }
.machine { font-size: 12px; color: #1f4e79; white-space: nowrap; }
table.setting th { text-align: left; }
img.plot { display: block; margin: 12px 0; }
.strip-name { font-size: 12px; white-space: nowrap; }
"""

CSS = REPORT_CSS + SITE_CSS

JS = """\
/* LossBench site: sort any table.sortable by a header click; filter rows by the headers marked data-filter. */
(function () {
  "use strict";

  function value(cell) {
    if (!cell) return "";
    var given = cell.getAttribute("data-sort");
    return given === null ? cell.textContent.trim() : given;
  }

  function isNumber(text) {
    return text !== "" && !isNaN(Number(text));
  }

  function sortBy(table, index, header) {
    var body = table.tBodies[0];
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index]);
      var y = value(b.cells[index]);
      if (x === "" || y === "") return (x === "") - (y === ""); /* empty cells last, either way */
      var order = isNumber(x) && isNumber(y) ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function filter(table, selects) {
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.hidden = selects.some(function (select) {
        return select.value !== "" && value(row.cells[Number(select.dataset.column)]) !== select.value;
      });
    });
  }

  function setUp(table) {
    var selects = [];
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.tabIndex = 0;
      header.title = "sort by this column (again: reverse)";
      header.addEventListener("click", function () { sortBy(table, index, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter") sortBy(table, index, header);
      });
      var name = header.getAttribute("data-filter");
      if (!name) return;
      var seen = {};
      rows.forEach(function (row) { seen[value(row.cells[index])] = true; });
      var select = document.createElement("select");
      select.name = name;
      select.dataset.column = String(index);
      select.add(new Option("all", ""));
      Object.keys(seen).sort().forEach(function (text) { select.add(new Option(text, text)); });
      select.addEventListener("change", function () { filter(table, selects); });
      selects.push(select);
    });
    if (!selects.length) return;
    var bar = document.createElement("div");
    bar.className = "filters";
    selects.forEach(function (select) {
      var label = document.createElement("label");
      label.appendChild(document.createTextNode(select.name + " "));
      label.appendChild(select);
      bar.appendChild(label);
    });
    var box = table.parentNode.classList.contains("wide") ? table.parentNode : table;
    box.parentNode.insertBefore(bar, box);
  }

  document.querySelectorAll("table.sortable").forEach(setUp);
})();
"""
