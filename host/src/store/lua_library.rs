//! Script texts built from a library of shared Lua helper functions and a
//! script's own body, keeping only the helpers the body uses.
//!
//! The server runs a script's whole text on every call, so each helper
//! defined in it is a closure created anew each time: for a lock script,
//! the eleven shared helpers cost about as much server time as one
//! `redis.call`. A script here defines only what it calls.

/// A script: the helpers of `library` that `body` calls, directly or through
/// one another (in the library's order, with their comments), then `body`.
///
/// `library` holds only comments and top-level `local function NAME(...)`
/// definitions, each ending with a line `end` at the start of the line. A
/// helper counts as called where `NAME(` follows a character that cannot
/// be part of a name (a mention in a comment counts too, which only keeps
/// it).
pub(crate) fn script_using(library: &str, body: &str) -> String {
    let helpers = helpers(library);
    let mut kept = vec![false; helpers.len()];
    // A helper can only call the ones defined before it: one pass from the
    // last decides them all.
    for i in (0..helpers.len()).rev() {
        let name = helpers[i].name;
        kept[i] = calls(body, name)
            || (i + 1..helpers.len()).any(|j| kept[j] && calls(helpers[j].text, name));
    }
    let mut script = String::with_capacity(library.len() + body.len() + 1);
    for (helper, _) in helpers.iter().zip(&kept).filter(|(_, kept)| **kept) {
        script.push_str(helper.text);
    }
    script.push('\n');
    script.push_str(body);
    script
}

/// One helper function of a library: its name, and its text from the end
/// of the previous one (its comments) to its closing `end` line.
struct Helper<'a> {
    name: &'a str,
    text: &'a str,
}

fn helpers(library: &str) -> Vec<Helper<'_>> {
    let mut helpers = Vec::new();
    let (mut start, mut offset) = (0, 0);
    let mut name = None;
    for line in library.split_inclusive('\n') {
        let end = offset + line.len();
        let line = line.trim_end();
        match name {
            None => {
                name = line
                    .strip_prefix("local function ")
                    .and_then(|rest| rest.split_once('('))
                    .map(|(name, _)| name.trim());
            }
            Some(found) if line == "end" => {
                helpers.push(Helper {
                    name: found,
                    text: &library[start..end],
                });
                name = None;
                start = end;
            }
            Some(_) => {}
        }
        offset = end;
    }
    helpers
}

/// Whether `text` has `name(` where `name` is not the end of a longer name.
fn calls(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        let whole = !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        whole && text[at + name.len()..].starts_with('(')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBRARY: &str = "\
-- The first.
local function first(x)
  return x
end

-- Uses first.
local function second(x)
  return first(x) + 1
end

local function my_second(x)
  return x
end
";

    #[test]
    fn only_the_helpers_a_body_calls_are_kept() {
        let script = script_using(LIBRARY, "return first(1)");
        assert_eq!(
            script,
            "-- The first.\nlocal function first(x)\n  return x\nend\n\nreturn first(1)"
        );
    }

    #[test]
    fn a_helper_called_through_another_is_kept_before_it() {
        let script = script_using(LIBRARY, "return second(1)");
        let first = script.find("local function first(").unwrap();
        let second = script.find("local function second(").unwrap();
        assert!(first < second, "{script}");
        assert!(!script.contains("my_second"), "{script}");
    }

    #[test]
    fn a_name_inside_a_longer_name_is_not_a_call() {
        let script = script_using(LIBRARY, "return my_second(1)");
        assert!(script.contains("local function my_second("), "{script}");
        assert!(!script.contains("local function second("), "{script}");
        assert!(!script.contains("local function first("), "{script}");
    }

    #[test]
    fn the_shipped_libraries_hold_only_comments_and_helpers() {
        for library in [
            include_str!("grant_common.lua"),
            include_str!("lock_record.lua"),
            include_str!("semaphore_record.lua"),
            include_str!("rw_record.lua"),
            include_str!("waiters.lua"),
        ] {
            let helpers = helpers(library);
            assert!(!helpers.is_empty());
            let covered: usize = helpers.iter().map(|h| h.text.len()).sum();
            let before_each = helpers.iter().map(|h| {
                let at = h.text.find("local function ").unwrap();
                &h.text[..at]
            });
            for outside in before_each.chain([&library[covered..]]) {
                assert!(
                    outside
                        .lines()
                        .all(|l| l.trim().is_empty() || l.starts_with("--")),
                    "code outside a helper: {outside}"
                );
            }
        }
    }
}
