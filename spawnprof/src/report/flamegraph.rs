//! Flamegraph SVGs drawn by inferno from folded stacks, and the small
//! adjustment that lets one run inside the HTML report.
use anyhow::{Context as _, Result, bail};
use inferno::flamegraph::{
    self, Options, Palette,
    color::{BasicPalette, Color, PaletteMap},
};

use super::{charts, folded::StageFolder};
use crate::model::{Family, SPAWN_TIME};

/// What a flamegraph shows, for its title and hover text.
pub struct Labels<'a> {
    pub title: &'a str,
    pub subtitle: String,
    /// What one unit of width is, shown on hover (`ns`).
    pub count_name: &'a str,
    /// Prefix of the hover text (`Stage:`).
    pub name_type: &'a str,
}

fn options<'a>(labels: &Labels<'_>) -> Options<'a> {
    let mut opt = Options::default();
    opt.title = labels.title.to_string();
    opt.subtitle = Some(labels.subtitle.clone());
    opt.count_name = labels.count_name.to_string();
    opt.name_type = labels.name_type.to_string();
    // Same frame, same colour, in every report (and in A and B of a diff).
    opt.hash = true;
    opt.deterministic = true;
    opt.colors = Palette::Basic(BasicPalette::Aqua);
    opt
}

/// How counts are drawn.
#[derive(Clone, Copy, Debug)]
pub struct Render {
    /// Scales the displayed counts (weights may be stored scaled up to keep
    /// sub-unit precision in integers).
    pub factor: f64,
    /// Differential input: colour by first − second instead of second −
    /// first (to draw the first profile's shape with the usual colours).
    pub negate_differentials: bool,
}

impl Default for Render {
    fn default() -> Self {
        Self {
            factor: 1.0,
            negate_differentials: false,
        }
    }
}

/// Renders folded lines (`stack weight`, or `stack before after` for a
/// differential graph, drawn at the second count) as an interactive SVG
/// (search, zoom, hover).
pub fn render_lines(lines: &[&str], labels: &Labels<'_>, render: Render) -> Result<String> {
    render_with(lines, labels, render, None)
}

/// [`render_lines`] with fixed colours for the frames `colors` names
/// (the others: a shade of grey of their own).
pub fn render_colored(
    lines: &[&str],
    labels: &Labels<'_>,
    colors: &mut PaletteMap,
) -> Result<String> {
    render_with(lines, labels, Render::default(), Some(colors))
}

fn render_with(
    lines: &[&str],
    labels: &Labels<'_>,
    render: Render,
    colors: Option<&mut PaletteMap>,
) -> Result<String> {
    if lines.is_empty() {
        bail!("nothing to draw: no stage was measured");
    }
    let mut opt = options(labels);
    opt.factor = render.factor;
    opt.negate_differentials = render.negate_differentials;
    if let Some(map) = colors {
        // Frames not in the map (process and method names) get inferno's
        // per-name colour from a quiet palette.
        opt.colors = Palette::Basic(BasicPalette::Yellow);
        opt.palette_map = Some(map);
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opt, lines.iter().copied(), &mut svg)
        .with_context(|| format!("drawing the flamegraph {:?}", labels.title))?;
    String::from_utf8(svg).context("inferno wrote an SVG that is not UTF-8")
}

/// A colour from `#rrggbb`.
pub fn color(hex: &str) -> Color {
    let (r, g, b) = charts::rgb(hex);
    Color { r, g, b }
}

/// Every stage of the spawn-time tree in its family's colours.
pub fn stage_palette() -> PaletteMap {
    let mut map = PaletteMap::default();
    for n in SPAWN_TIME {
        if let Some(c) = charts::stage_color(n.name) {
            map.insert(n.name, color(c));
        }
    }
    map
}

/// The colour key of a picture: `orange: mm copy · blue: scheduler · …`.
pub fn family_key() -> String {
    let name = |f: Family| match f {
        Family::MmCopy => "orange",
        Family::Scheduler => "blue",
        Family::Exec => "green",
        Family::UserWork => "purple",
        Family::Task => "tan",
    };
    [
        Family::MmCopy,
        Family::Scheduler,
        Family::Exec,
        Family::UserWork,
        Family::Task,
    ]
    .map(|f| format!("{} {}", name(f), f.label()))
    .join(" · ")
}

/// Light greys for the frames that are not stages (the root, process and
/// method frames), a shade per name so neighbours stay apart.
pub fn grey_for(name: &str) -> Color {
    const GREYS: [&str; 4] = ["#dadada", "#cfcfcf", "#e4e4e4", "#c6c6c6"];
    let h = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    color(GREYS[h % GREYS.len()])
}

/// The stage flamegraph of a recording (`stages.svg`).
pub fn stages_svg(folder: &StageFolder) -> Result<String> {
    let lines = folder.lines();
    let text: Vec<String> = lines.iter().map(|(s, w)| format!("{s} {w}")).collect();
    let refs: Vec<&str> = text.iter().map(String::as_str).collect();
    let mut palette = stage_palette();
    // inferno's own root frame ("all"), which it names with an empty string.
    palette.insert("", grey_for("all"));
    for (stack, _) in &lines {
        // root;parent;method: grey, under the coloured stages.
        for frame in stack.split(';').take(3) {
            if palette.get(frame).is_none() {
                palette.insert(frame, grey_for(frame));
            }
        }
    }
    let labels = Labels {
        title: "spawnprof: where spawn time goes, by stage",
        subtitle: format!(
            "{} spawns, clone entry to the child's exec (or first run), each ns once · {}",
            folder.spawns(),
            family_key()
        ),
        count_name: "ns",
        name_type: "Stage:",
    };
    render_colored(&refs, &labels, &mut palette)
}

/// Makes an inferno SVG safe to show from a `data:` URL inside the report.
///
/// inferno's script records the zoom and search state in the page address
/// with `history.replaceState(null, null, "?x=…")`. A `data:` document has
/// no address such a relative URL can resolve against, so the call throws
/// after every click (the zoom itself still works) and fills the console
/// with errors. A guard placed before inferno's script swallows just that
/// failure; the SVG files written to disk stay exactly as inferno made them.
pub fn embeddable(svg: &str) -> String {
    const GUARD: &str = r#"<script type="text/ecmascript"><![CDATA[
(function () {
  var replace = history.replaceState.bind(history);
  history.replaceState = function (s, t, u) { try { replace(s, t, u); } catch (e) {} };
})();
]]></script>"#;
    let Some(start) = svg.find("<svg") else {
        return svg.to_string();
    };
    let Some(end) = svg[start..].find('>') else {
        return svg.to_string();
    };
    let at = start + end + 1;
    let mut out = String::with_capacity(svg.len() + GUARD.len());
    out.push_str(&svg[..at]);
    out.push_str(GUARD);
    out.push_str(&svg[at..]);
    out
}

/// The `height` attribute of an SVG's root element, to size its frame.
pub fn svg_height(svg: &str) -> Option<u32> {
    let start = svg.find("<svg")?;
    let tag = &svg[start..start + svg[start..].find('>')?];
    let h = tag.split(" height=\"").nth(1)?;
    h[..h.find('"')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flamegraph_is_valid_xml_with_its_script_and_labels() {
        let lines = [
            "all spawns;sh;vfork;copy_process 700",
            "all spawns;sh;vfork;exec;exec_load 300",
        ];
        let labels = Labels {
            title: "t <&> title",
            subtitle: "widths are nanoseconds".into(),
            count_name: "ns",
            name_type: "Stage:",
        };
        let svg = render_lines(&lines, &labels, Render::default()).unwrap();
        let opt = || roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&svg, opt()).expect("valid XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert!(
            doc.descendants().any(|n| n.tag_name().name() == "script"),
            "keeps inferno's search/zoom script"
        );
        let texts: String = doc.descendants().filter_map(|n| n.text()).collect();
        assert!(texts.contains("t <&> title"));
        assert!(texts.contains("widths are nanoseconds"));
        assert!(svg.contains("copy_process (700 ns"), "hover text in ns");
        assert_eq!(
            svg_height(&svg),
            root.attribute("height").unwrap().parse().ok()
        );

        let embedded = embeddable(&svg);
        roxmltree::Document::parse_with_options(&embedded, opt()).expect("still valid XML");
        assert!(embedded.contains("history.replaceState = function"));
    }

    #[test]
    fn nothing_measured_is_an_error_not_an_empty_picture() {
        let labels = Labels {
            title: "t",
            subtitle: String::new(),
            count_name: "ns",
            name_type: "Stage:",
        };
        assert!(render_lines(&[], &labels, Render::default()).is_err());
    }
}
