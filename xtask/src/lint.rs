//! A check on the sources themselves: no function outside tests runs past
//! [`MAX_LINES`] lines unless a `// Long:` comment right above it says why.
//! Long functions are where two behaviours end up in one place; the
//! redesign of issue 18 cut them down, and this keeps them so.

/// The most lines a function may have (signature to closing brace).
const MAX_LINES: usize = 90;

/// `src` with comments, string and character literals blanked (newlines
/// kept), so braces inside them do not count.
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            i + rest
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2)
        } else if let Some((prefix, hashes)) = raw_string_start(b, i) {
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + prefix + hashes + 1;
            body + b[body..]
                .windows(close.len())
                .position(|w| w == close)
                .map_or(b.len() - body, |p| p + close.len())
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' {
            // A character literal, not a lifetime: 'x', '\n', '\u{..}'.
            match rest.iter().skip(1).take(10).position(|&c| c == b'\'') {
                Some(p) if p == 1 || rest[1] == b'\\' => i + p + 2,
                _ => i + 1,
            }
        } else {
            i + 1
        };
        if end > i + 1 {
            blank(&mut out, i, end);
        }
        i = end.max(i + 1);
    }
    out
}

/// A raw string starting at `i` (`r"`, `r#"`, `br"`): the length of its
/// prefix (`r` or `br`) and its number of `#`.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let prefix = match b.get(i..i + 2) {
        Some(b"br") => 2,
        _ if b.get(i) == Some(&b'r') => 1,
        _ => return None,
    };
    let hashes = b[i + prefix..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + prefix + hashes) == Some(&b'"')).then_some((prefix, hashes))
}

/// Functions of `src` before its `#[cfg(test)] mod tests`, longer than
/// `max` and without a `// Long:` comment: (line, name, lines).
fn long_functions(src: &str, max: usize) -> Vec<(usize, String, usize)> {
    let code = code_only(src);
    let text = String::from_utf8_lossy(&code);
    let cut = src.find("#[cfg(test)]\nmod tests").unwrap_or(src.len());
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(p) = text[at..cut].find("fn ") {
        let start = at + p;
        at = start + 3;
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[start + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body: the first `{` before any `;` (a declaration has none).
        let Some(open) = text[start..].find(['{', ';']).map(|o| start + o) else {
            break;
        };
        if code[open] == b';' {
            continue;
        }
        let mut depth = 0usize;
        let mut close = open;
        for (k, &c) in code[open..].iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let lines = code[start..=close].iter().filter(|&&c| c == b'\n').count() + 1;
        let line = code[..start].iter().filter(|&&c| c == b'\n').count() + 1;
        let line_start = src[..start].rfind('\n').map_or(0, |p| p + 1);
        let explained = src[..line_start]
            .lines()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("//")
                    || l.starts_with("#[")
                    || l.starts_with(')')
                    || l.contains("reason")
            })
            .any(|l| l.trim_start().starts_with("// Long:"));
        if lines > max && !explained {
            found.push((line, name, lines));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() && !["target", "fuzz", ".git"].contains(&name.to_str().unwrap_or("")) {
                // Integration tests are tests: `tests/` folders of a crate.
                if name != "tests" || p.parent() == Some(&crate::root()) {
                    sources(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_function_outside_tests_runs_long_without_saying_why() {
        let mut files = Vec::new();
        sources(&crate::root(), &mut files);
        assert!(files.len() > 50, "{files:?}");
        let mut long = Vec::new();
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            for (line, name, n) in long_functions(&src, MAX_LINES) {
                long.push(format!("{}:{line} {name}: {n} lines", f.display()));
            }
        }
        assert!(
            long.is_empty(),
            "functions past {MAX_LINES} lines (cut them, or say why above them in a `// Long:` comment):\n{}",
            long.join("\n")
        );
    }

    #[test]
    fn the_check_sees_through_strings_comments_and_characters() {
        let body = "    x();\n".repeat(5);
        let src = format!(
            "fn short() {{\n    let s = \"{{ }} {{\"; // {{\n    let c = '{{';\n    let r = r#\"}}\"#;\n    let b = br\"}}\";\n{body}}}\n\n/// Doc.\n// Long: a state machine.\nfn explained() {{\n{body}}}\n\nfn long_one<'a>(x: &'a str) {{\n{body}}}\n"
        );
        let found = long_functions(&src, 6);
        assert_eq!(
            found.iter().map(|(_, n, _)| n.as_str()).collect::<Vec<_>>(),
            ["short", "long_one"],
            "{found:?}"
        );
        assert!(long_functions(&src, 20).is_empty());
    }
}
