//! Tables a reader can sort by clicking a column, in report.html and
//! bench.html: one small inline script (the pages stay self-contained and
//! work offline), numeric cells sorted by the raw value in `data-v`.
//!
//! A table of class `sortable` sorts its rows; one whose rows come in
//! `<tbody class="group">` blocks (a summary row, `tr.head`, then its
//! members) sorts the blocks by their summary rows, and a click on a
//! summary row opens or closes the block. `#sort=KEY` (or `#sort=-KEY`,
//! descending) in the page's address sorts by the column whose header
//! has `data-key="KEY"` as the page opens, so a sorted view can be linked.
use std::fmt::Write as _;

use super::charts::escape;

/// The script, placed once at the end of a page. It has no `<` or `&`,
/// so the page stays well-formed XML.
pub const SCRIPT: &str = r#"<script>
(function () {
  function value(cell) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null) return (cell ? cell.textContent : "").trim().toLowerCase();
    var n = parseFloat(v);
    return isNaN(n) ? -Infinity : n;
  }
  function units(table) {
    var groups = table.querySelectorAll(":scope > tbody.group");
    if (groups.length) return Array.prototype.slice.call(groups);
    return Array.prototype.slice.call(table.tBodies[0].rows);
  }
  function sort(table, col, descending) {
    var items = units(table);
    if (!items.length) return;
    var parent = items[0].parentNode;
    items.sort(function (a, b) {
      var x = value((a.rows ? a.rows[0] : a).cells[col]);
      var y = value((b.rows ? b.rows[0] : b).cells[col]);
      var numbers = typeof x === "number" ? typeof y === "number" : false;
      var c = numbers ? (x === y ? 0 : (x > y ? 1 : -1)) : String(x).localeCompare(String(y));
      return descending ? -c : c;
    });
    items.forEach(function (item) { parent.appendChild(item); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === col) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    table.classList.add("js");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        var numeric = th.classList.contains("num");
        var current = th.getAttribute("aria-sort");
        var descending = current ? current === "ascending" : numeric;
        sort(table, i, descending);
      });
    });
    Array.prototype.forEach.call(table.querySelectorAll("tbody.group > tr.head"), function (tr) {
      tr.addEventListener("click", function () { tr.parentNode.classList.toggle("open"); });
    });
  });
  var m = /sort=(-?)([A-Za-z0-9_-]+)/.exec(location.hash);
  if (m) {
    Array.prototype.forEach.call(tables, function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        if (th.getAttribute("data-key") === m[2]) sort(table, i, m[1] === "-");
      });
    });
  }
})();
</script>"#;

/// The look of sortable tables and their groups (no `<`, `>` or `&`: the
/// page stays well-formed XML).
pub const CSS: &str = r#"
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \25B2"; font-size: 10px; }
table.sortable th[aria-sort="descending"]::after { content: " \25BC"; font-size: 10px; }
table.js tbody.group tr.members { display: none; }
table.js tbody.group.open tr.members { display: table-row; }
tbody.group tr.head { cursor: pointer; }
tbody.group tr.head td:first-child::before { content: "\25B8 "; color: #59636e; }
tbody.group.open tr.head td:first-child::before { content: "\25BE "; }
tbody.group tr.head { background: #fff; }
tbody.group { border-bottom: 1px solid #e1e4e8; }
table.members { margin: 2px 0 8px 18px; width: auto; }
"#;

/// A column: header text, a key for `#sort=`, and whether it is numeric.
pub struct Column<'a> {
    pub name: &'a str,
    pub key: &'a str,
    pub num: bool,
}

/// The header of a sortable table.
pub fn header(out: &mut String, columns: &[Column<'_>]) {
    out.push_str("<thead><tr>");
    for c in columns {
        let _ = write!(
            out,
            r#"<th data-key="{}"{}>{}</th>"#,
            escape(c.key),
            if c.num { r#" class="num""# } else { "" },
            escape(c.name)
        );
    }
    out.push_str("</tr></thead>");
}

/// A numeric cell: shown as `text`, sorted by `value` (`None`: last).
pub fn num(out: &mut String, text: &str, value: Option<f64>) {
    let v = value.map_or_else(String::new, |v| format!("{v}"));
    let _ = write!(out, r#"<td class="num" data-v="{v}">{}</td>"#, escape(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_and_style_keep_a_page_well_formed_xml() {
        for text in [SCRIPT, CSS] {
            assert!(!text.contains('&'), "no entities to escape");
        }
        let body = SCRIPT
            .trim_start_matches("<script>")
            .trim_end_matches("</script>");
        assert!(!body.contains('<'), "no tag opened inside the script");
        roxmltree::Document::parse(&format!("<p>{SCRIPT}<style>{CSS}</style></p>")).unwrap();
    }
}
