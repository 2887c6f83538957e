//! Console themes: colours from `themes/*.toml` (embedded) mapped to the terminal's abilities,
//! and the glyphs for each environment state (ASCII when the locale is not UTF-8).
//!
//! NO_COLOR is handled here rather than left to crossterm, whose NO_COLOR handling also drops
//! attributes: mono keeps bold and reverse and maps every colour to the terminal's default.

use std::collections::BTreeMap;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The built-in themes, by name.
pub const BUILT_IN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

/// How many colours the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    TrueColor,
    Palette256,
    /// NO_COLOR: bold and reverse only.
    None,
}

impl ColorMode {
    /// From the environment: `NO_COLOR` (any non-empty value) wins, then `COLORTERM`.
    pub fn detect() -> ColorMode {
        Self::from_vars(
            std::env::var("NO_COLOR").ok().as_deref(),
            std::env::var("COLORTERM").ok().as_deref(),
        )
    }

    fn from_vars(no_color: Option<&str>, colorterm: Option<&str>) -> ColorMode {
        if no_color.is_some_and(|v| !v.is_empty()) {
            ColorMode::None
        } else if matches!(colorterm, Some("truecolor" | "24bit")) {
            ColorMode::TrueColor
        } else {
            ColorMode::Palette256
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    #[serde(default)]
    mono: bool,
    #[serde(default)]
    colors: BTreeMap<String, String>,
}

/// Why a theme could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error(
        "no theme `{name}` (built in: dark, light, high-contrast, mono; or a path to a .toml file)"
    )]
    Unknown { name: String },
    #[error("theme {path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// Every style the console draws with.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub text: Style,
    pub dim: Style,
    pub title: Style,
    pub border: Style,
    pub border_focused: Style,
    /// The selected cell or line.
    pub cursor: Style,
    pub ok: Style,
    pub fail: Style,
    pub warn: Style,
    pub running: Style,
    pub pending: Style,
    pub blocked: Style,
    pub skipped: Style,
    pub drifted: Style,
    pub rolled_back: Style,
    pub badge: Style,
}

impl Theme {
    /// A built-in theme by name, or a theme file by path.
    pub fn load(name_or_path: &str, mode: ColorMode) -> Result<Theme, ThemeError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, name_or_path, mode);
        }
        if name_or_path.ends_with(".toml") {
            let text = std::fs::read_to_string(name_or_path).map_err(|e| ThemeError::Invalid {
                path: name_or_path.into(),
                detail: e.to_string(),
            })?;
            return Self::parse(&text, name_or_path, mode);
        }
        Err(ThemeError::Unknown {
            name: name_or_path.into(),
        })
    }

    /// The default theme for this terminal.
    pub fn default_for(mode: ColorMode) -> Theme {
        Self::load("dark", mode).expect("the built-in dark theme is valid")
    }

    fn parse(text: &str, path: &str, mode: ColorMode) -> Result<Theme, ThemeError> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| ThemeError::Invalid {
            path: path.into(),
            detail: e.to_string(),
        })?;
        let mono = file.mono || mode == ColorMode::None;
        let mut colors = BTreeMap::new();
        for (key, value) in &file.colors {
            let rgb = parse_hex(value).ok_or_else(|| ThemeError::Invalid {
                path: path.into(),
                detail: format!("colors.{key} = {value:?} is not a #rrggbb colour"),
            })?;
            colors.insert(key.as_str(), rgb);
        }
        let color = |key: &str| -> Color {
            match (mono, colors.get(key)) {
                (true, _) | (false, None) => Color::Reset,
                (false, Some(&(r, g, b))) => match mode {
                    ColorMode::TrueColor => Color::Rgb(r, g, b),
                    _ => Color::Indexed(nearest_256(r, g, b)),
                },
            }
        };
        let fg = |key: &str| Style::new().fg(color(key));
        let bold = Modifier::BOLD;
        // In mono, emphasis replaces colour: what needs attention is bold or reversed.
        let (fail, cursor, badge) = if mono {
            (
                Style::new().add_modifier(bold),
                Style::new().add_modifier(Modifier::REVERSED),
                Style::new().add_modifier(Modifier::REVERSED | bold),
            )
        } else {
            (
                fg("fail").add_modifier(bold),
                Style::new().bg(color("cursor")).add_modifier(bold),
                Style::new()
                    .fg(color("cursor"))
                    .bg(color("warn"))
                    .add_modifier(bold),
            )
        };
        Ok(Theme {
            name: file.name,
            text: fg("text"),
            dim: if mono {
                Style::new().add_modifier(Modifier::DIM)
            } else {
                fg("dim")
            },
            title: fg("accent").add_modifier(bold),
            border: fg("border"),
            border_focused: fg("accent").add_modifier(bold),
            cursor,
            ok: fg("ok"),
            fail,
            warn: fg("warn").add_modifier(bold),
            running: fg("running").add_modifier(bold),
            pending: fg("pending"),
            blocked: fg("blocked"),
            skipped: fg("skipped"),
            drifted: fg("drifted").add_modifier(bold),
            rolled_back: fg("rolled_back"),
            badge,
        })
    }
}

fn parse_hex(s: &str) -> Option<(u8, u8, u8)> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

/// The nearest colour of the xterm 256-colour palette (its 6x6x6 cube or its grey ramp).
fn nearest_256(r: u8, g: u8, b: u8) -> u8 {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let nearest_level = |v: u8| {
        (0..6)
            .min_by_key(|&i| (LEVELS[i] as i32 - v as i32).abs())
            .unwrap_or(0)
    };
    let (ri, gi, bi) = (nearest_level(r), nearest_level(g), nearest_level(b));
    let cube = (LEVELS[ri], LEVELS[gi], LEVELS[bi]);
    let avg = (r as u32 + g as u32 + b as u32) / 3;
    let grey_index = ((avg.saturating_sub(8)) / 10).min(23) as u8;
    let grey = 8 + 10 * grey_index;
    let dist = |(cr, cg, cb): (u8, u8, u8)| {
        let d = |a: u8, b: u8| (a as i32 - b as i32).pow(2);
        d(cr, r) + d(cg, g) + d(cb, b)
    };
    if dist((grey, grey, grey)) < dist(cube) {
        232 + grey_index
    } else {
        16 + 36 * ri as u8 + 6 * gi as u8 + bi as u8
    }
}

/// The glyphs the console draws with: Unicode, or ASCII when the locale cannot show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glyphs {
    pub unicode: bool,
}

impl Glyphs {
    /// From the locale variables, in the order the C library reads them.
    pub fn detect() -> Glyphs {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Glyphs {
            unicode: locale.contains("utf-8") || locale.contains("utf8"),
        }
    }

    /// A bordered block, in ASCII when the locale cannot show box drawing.
    pub fn bordered<'a>(&self) -> ratatui::widgets::Block<'a> {
        let block = ratatui::widgets::Block::bordered();
        if self.unicode {
            block
        } else {
            block.border_set(ratatui::symbols::border::Set {
                top_left: "+",
                top_right: "+",
                bottom_left: "+",
                bottom_right: "+",
                vertical_left: "|",
                vertical_right: "|",
                horizontal_top: "-",
                horizontal_bottom: "-",
            })
        }
    }

    pub fn pick(&self, unicode: &'static str, ascii: &'static str) -> &'static str {
        if self.unicode {
            unicode
        } else {
            ascii
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_loads_in_every_colour_mode() {
        for (name, _) in BUILT_IN {
            for mode in [ColorMode::TrueColor, ColorMode::Palette256, ColorMode::None] {
                let theme = Theme::load(name, mode).unwrap();
                assert_eq!(theme.name, name);
                if mode == ColorMode::None {
                    assert_eq!(theme.ok.fg, Some(Color::Reset), "{name}");
                    assert!(theme.cursor.add_modifier.contains(Modifier::REVERSED));
                }
            }
        }
        let dark = Theme::load("dark", ColorMode::TrueColor).unwrap();
        assert_eq!(dark.ok.fg, Some(Color::Rgb(0xa6, 0xe3, 0xa1)));
        let dark = Theme::load("dark", ColorMode::Palette256).unwrap();
        assert!(matches!(dark.ok.fg, Some(Color::Indexed(_))));
    }

    #[test]
    fn no_color_wins_over_colorterm() {
        assert_eq!(
            ColorMode::from_vars(Some("1"), Some("truecolor")),
            ColorMode::None
        );
        assert_eq!(
            ColorMode::from_vars(Some(""), Some("truecolor")),
            ColorMode::TrueColor
        );
        assert_eq!(ColorMode::from_vars(None, None), ColorMode::Palette256);
    }

    #[test]
    fn the_256_colour_palette_is_approximated() {
        assert_eq!(nearest_256(0, 0, 0), 16);
        assert_eq!(nearest_256(255, 0, 0), 196);
        assert_eq!(nearest_256(255, 255, 255), 231);
        assert_eq!(nearest_256(128, 128, 128), 244);
    }

    #[test]
    fn a_bad_theme_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "name = \"t\"\n[colors]\nok = \"green\"\n").unwrap();
        let err = Theme::load(path.to_str().unwrap(), ColorMode::TrueColor).unwrap_err();
        assert!(err.to_string().contains("colors.ok"), "{err}");
        assert!(Theme::load("neon", ColorMode::TrueColor)
            .unwrap_err()
            .to_string()
            .contains("built in"));
    }
}
