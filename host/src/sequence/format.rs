//! The format of a serial number: literal text, `{date}`, `{seq}`,
//! `{seq:0N}`, and `{{` / `}}` for braces.

use crate::error::{Error, Result};

/// The longest format accepted, in bytes.
pub(crate) const MAX_FORMAT_BYTES: usize = 256;

/// The widest zero padding: `u64::MAX` has 20 digits.
const MAX_WIDTH: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// The server's day, `YYYYMMDD`.
    Date,
    /// The number, zero-padded to at least `width` digits.
    Seq {
        width: usize,
    },
}

/// A parsed, valid format: it shows the number exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    parts: Vec<Part>,
}

impl Default for Format {
    /// The bare number: `{seq}`.
    fn default() -> Self {
        Format {
            parts: vec![Part::Seq { width: 0 }],
        }
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("sequence format", reason)
}

impl Format {
    /// Parses `text`, refusing unknown or unclosed placeholders, a lone `}`,
    /// and formats that do not show `{seq}` exactly once.
    pub fn parse(text: &str) -> Result<Format> {
        if text.len() > MAX_FORMAT_BYTES {
            return Err(bad(format!(
                "is {} bytes long; the limit is {MAX_FORMAT_BYTES}",
                text.len()
            )));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, next)| next == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, next)| next == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(bad(format!("lone '}}' at byte {at} (write '}}}}')"))),
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(len) = rest.find('}') else {
                        return Err(bad(format!("'{{' at byte {at} is never closed")));
                    };
                    let placeholder = &rest[..len];
                    // Skip the placeholder and its closing brace.
                    for _ in 0..=placeholder.chars().count() {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(parse_placeholder(placeholder)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let seqs = parts
            .iter()
            .filter(|p| matches!(p, Part::Seq { .. }))
            .count();
        if seqs != 1 {
            return Err(bad(format!(
                "must show {{seq}} exactly once, it shows it {seqs} times"
            )));
        }
        Ok(Format { parts })
    }

    /// `true` when the format shows the day.
    pub fn shows_date(&self) -> bool {
        self.parts.contains(&Part::Date)
    }

    /// The serial number `seq` of day `day` (`YYYYMMDD`) in this format.
    pub fn render(&self, day: &str, seq: u64) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Date => out.push_str(day),
                Part::Seq { width } => out.push_str(&format!("{seq:0width$}")),
            }
        }
        out
    }
}

fn parse_placeholder(placeholder: &str) -> Result<Part> {
    match placeholder {
        "date" => Ok(Part::Date),
        "seq" => Ok(Part::Seq { width: 0 }),
        _ => {
            let width = placeholder
                .strip_prefix("seq:0")
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|width| (1..=MAX_WIDTH).contains(width));
            match width {
                Some(width) => Ok(Part::Seq { width }),
                None => Err(bad(format!(
                    "unknown placeholder {{{placeholder}}}: use {{date}}, {{seq}} or {{seq:0N}} with N from 1 to {MAX_WIDTH}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefix_date_and_zero_padding() {
        let format = Format::parse("ORD-{date}-{seq:06}").unwrap();
        assert!(format.shows_date());
        assert_eq!(format.render("20261122", 42), "ORD-20261122-000042");
        assert_eq!(format.render("20261122", 1234567), "ORD-20261122-1234567");
        assert_eq!(Format::default().render("20261122", 7), "7");
        assert!(!Format::default().shows_date());
    }

    #[test]
    fn doubled_braces_are_literal() {
        let format = Format::parse("{{x}}-{seq}-{{{date}}}").unwrap();
        assert_eq!(format.render("20260101", 3), "{x}-3-{20260101}");
    }

    #[test]
    fn non_ascii_text_is_kept() {
        let format = Format::parse("Nº{seq:03}€").unwrap();
        assert_eq!(format.render("20260101", 5), "Nº005€");
    }

    #[test]
    fn bad_formats_are_refused() {
        for text in [
            "",
            "ORD",
            "{date}",
            "{seq}{seq}",
            "{seq",
            "{seq}}",
            "}{seq}",
            "{sequence}",
            "{seq:6}",
            "{seq:0}",
            "{seq:021}",
            "{seq:0x}",
            "{seq:0-1}",
            "{}",
            "{Date}{seq}",
        ] {
            match Format::parse(text) {
                Err(Error::InvalidArgument { what, .. }) => assert_eq!(what, "sequence format"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        assert!(Format::parse(&format!("{{seq}}{}", "x".repeat(MAX_FORMAT_BYTES))).is_err());
    }
}
