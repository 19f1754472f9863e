//! Where configuration text comes from: the file system, or nowhere (for
//! in-memory parsing and fuzzing, where `include` must never touch files).
//! Also owns the small shell-style glob used by `include`.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Reads configuration files and expands `include` patterns.
pub trait SourceLoader {
    /// Reads a whole file as bytes.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Expands a shell-style pattern (`*`, `?`, `[...]`) to the sorted list of
    /// existing paths. A pattern without wildcards is returned unchanged.
    fn expand(&self, pattern: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether `include` is allowed at all.
    fn includes_enabled(&self) -> bool {
        true
    }
    /// Unix permission bits of a file, when known (used to warn about
    /// world-readable secrets).
    fn mode(&self, _path: &Path) -> Option<u32> {
        None
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsLoader;

impl SourceLoader for FsLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn expand(&self, pattern: &Path) -> io::Result<Vec<PathBuf>> {
        expand_glob(pattern)
    }

    fn mode(&self, path: &Path) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).ok().map(|m| m.permissions().mode())
    }
}

/// A loader that reads nothing: every `include` is reported as an error.
/// Used for in-memory parsing (fuzzing, tests of single files).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIncludes;

impl SourceLoader for NoIncludes {
    fn read(&self, _path: &Path) -> io::Result<Vec<u8>> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "file access disabled",
        ))
    }

    fn expand(&self, pattern: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(vec![pattern.to_path_buf()])
    }

    fn includes_enabled(&self) -> bool {
        false
    }
}

/// True when the string contains a shell wildcard.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands a glob pattern on the file system; results are sorted.
/// Wildcards may appear in any path component; `*` and `?` do not match a
/// leading `.` (as in the shell).
pub fn expand_glob(pattern: &Path) -> io::Result<Vec<PathBuf>> {
    if !has_wildcard(&pattern.to_string_lossy()) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in pattern.components() {
        let mut next = Vec::new();
        match comp {
            Component::Normal(part) => {
                let part = part.to_string_lossy();
                if has_wildcard(&part) {
                    for base in &current {
                        let dir = if base.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            base.as_path()
                        };
                        let Ok(rd) = std::fs::read_dir(dir) else {
                            continue;
                        };
                        let mut names: Vec<String> = rd
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| glob_match(&part, n))
                            .collect();
                        names.sort();
                        next.extend(names.into_iter().map(|n| base.join(n)));
                    }
                } else {
                    next.extend(current.iter().map(|b| b.join(part.as_ref())));
                }
            }
            other => next.extend(current.iter().map(|b| b.join(other.as_os_str()))),
        }
        current = next;
    }
    current.retain(|p| p.exists());
    Ok(current)
}

/// Matches one path component against a pattern with `*`, `?` and `[...]`
/// (ranges `a-z` and negation `!`/`^`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches a `[...]` class at the start of `p`; returns (matched, class length),
/// or None when the class is not terminated (then `[` is literal).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((hit != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*.conf", "aws.conf"));
        assert!(!glob_match("*.conf", "aws.secrets"));
        assert!(!glob_match("*.conf", ".hidden.conf"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("t[0-9].conf", "t5.conf"));
        assert!(!glob_match("t[!0-9].conf", "t5.conf"));
        assert!(glob_match("*a*b*", "xxaYYbzz"));
        assert!(!glob_match("*a*b", "xxaYYbzz"));
        assert!(glob_match("[", "["));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn expand_on_disk() {
        let dir = std::env::temp_dir().join(format!("tb-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        for f in ["b.conf", "a.conf", "c.txt"] {
            std::fs::write(dir.join("d").join(f), "").unwrap();
        }
        let got = expand_glob(&dir.join("*/*.conf")).unwrap();
        assert_eq!(
            got,
            vec![dir.join("d/a.conf"), dir.join("d/b.conf")],
            "sorted, filtered"
        );
        assert!(expand_glob(&dir.join("none/*.conf")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
